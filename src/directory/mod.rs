//! The directory: who the gateway knows. Today: groups (expanded into their members when a
//! message is received) and opt-outs (recipients that accept no messages). The one place
//! that grows into users, group identities and apps.
