//! Content conversion: reshaping a message for the channel it goes to.

pub mod sms;
