//! Sources: list work units and stream their content to the searchers.
