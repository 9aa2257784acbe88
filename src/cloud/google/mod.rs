//! Google Cloud credentials.
