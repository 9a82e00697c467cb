//! Search-export results (CSV or JSON).
