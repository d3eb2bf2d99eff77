//! Outputs: a new file next to the destination, renamed into place.
