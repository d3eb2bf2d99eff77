//! Inputs: regular files only, opened without blocking, read with a size cap.
