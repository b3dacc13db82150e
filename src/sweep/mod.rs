//! Stage `sweep` (see DESIGN.md).
