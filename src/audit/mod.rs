//! Stage `audit` (see DESIGN.md).
