//! The docker backend end to end on this machine's engine, with an image built here.
