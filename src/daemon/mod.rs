//! Stage `daemon` (see DESIGN.md).
