//! Sluice's actors.
