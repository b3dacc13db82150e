//! Stage `store` (see DESIGN.md).
