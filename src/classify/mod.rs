//! Stage `classify` (see DESIGN.md).
