//! Figures (later issue).
