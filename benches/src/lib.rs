//! Shared fixtures of the hutch benchmarks.
