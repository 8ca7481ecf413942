//! Persist's crypto core.
