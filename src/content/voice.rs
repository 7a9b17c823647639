//! How a message a member spoke as a group is shown on each network: the group is the
//! sender everywhere, with the member's name beside it.
//!
//! - phones (and IM when there is no group component): the text begins
//!   `Team 42 / Alice: `;
//! - mail: `From: "Team 42 (Alice)" <team42@groups.example.org>`, `Reply-To` the group;
//! - XMPP: from the group's JID with the member's name as the resource
//!   (`team42@groups.example.org/Alice`).

use crate::address::Address;

/// The names a message spoken as a group is shown with: the group's and the member's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voice {
    /// The group's name (`Team 42`).
    pub group: String,
    /// The member who spoke (`Alice`).
    pub speaker: String,
}

/// Most bytes of a JID resource (RFC 7622).
const MAX_RESOURCE: usize = 1023;

impl Voice {
    /// The voice of a message from `origin` spoken by `speaker`: only a group's origin
    /// with a member speaking has one. `name` gives a party's name (the directory's
    /// `display_name`).
    pub fn of(
        origin: &Address,
        speaker: Option<&Address>,
        name: impl Fn(&Address) -> String,
    ) -> Option<Voice> {
        match (origin, speaker) {
            (Address::Group(_), Some(s)) => Some(Voice {
                group: one_line(&name(origin)),
                speaker: one_line(&name(s)),
            }),
            _ => None,
        }
    }

    /// What goes before the text on a phone: `Team 42 / Alice: `.
    pub fn prefix(&self) -> String {
        format!("{} / {}: ", self.group, self.speaker)
    }

    /// `text` as a phone shows it: after [`Voice::prefix`].
    pub fn prefixed(&self, text: &str) -> String {
        format!("{}{text}", self.prefix())
    }

    /// The display name of the group's `From` on mail: `Team 42 (Alice)`. The mail
    /// builder quotes and encodes it.
    pub fn mail_name(&self) -> String {
        format!("{} ({})", self.group, self.speaker)
    }

    /// The member's name as a JID resource: control characters dropped, any run of
    /// white space one space, trimmed, at most 1023 bytes; `member` when nothing is left.
    pub fn resource(&self) -> String {
        let mut out = String::new();
        for word in self
            .speaker
            .split(|c: char| c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            let word: String = word.chars().filter(|c| !c.is_control()).collect();
            if word.is_empty() {
                continue;
            }
            let sep = usize::from(!out.is_empty());
            if out.len() + sep + word.len() > MAX_RESOURCE {
                if out.is_empty() {
                    let mut end = MAX_RESOURCE;
                    while !word.is_char_boundary(end) {
                        end -= 1;
                    }
                    out.push_str(&word[..end]);
                }
                break;
            }
            if sep == 1 {
                out.push(' ');
            }
            out.push_str(&word);
        }
        if out.is_empty() { "member".into() } else { out }
    }
}

/// A name on one line: line breaks and other control characters become spaces, runs of
/// white space one space.
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(group: &str, speaker: &str) -> Voice {
        Voice {
            group: group.into(),
            speaker: speaker.into(),
        }
    }

    #[test]
    fn only_a_group_with_a_speaker_has_a_voice() {
        let name = |a: &Address| match a {
            Address::Group(_) => "Team 42".to_string(),
            a => format!("name of {}", a.value()),
        };
        let group = Address::Group("team42".into());
        let alice = Address::Im("alice@localhost".into());
        assert_eq!(
            Voice::of(&group, Some(&alice), name),
            Some(voice("Team 42", "name of alice@localhost"))
        );
        assert_eq!(Voice::of(&group, None, name), None);
        assert_eq!(Voice::of(&alice, Some(&alice), name), None);
    }

    #[test]
    fn names_are_kept_on_one_line() {
        let group = Address::Group("team42".into());
        let v = Voice::of(&group, Some(&group), |_| " Team\r\n 42\t".to_string()).unwrap();
        assert_eq!(v.group, "Team 42");
        assert_eq!(v.prefix(), "Team 42 / Team 42: ");
    }

    #[test]
    fn a_phone_sees_group_then_speaker() {
        let v = voice("Team 42", "Alice");
        assert_eq!(v.prefix(), "Team 42 / Alice: ");
        assert_eq!(v.prefixed("hello"), "Team 42 / Alice: hello");
    }

    #[test]
    fn mail_names_the_speaker_beside_the_group() {
        assert_eq!(voice("Team 42", "Alice").mail_name(), "Team 42 (Alice)");
    }

    #[test]
    fn resources_are_safe_for_a_jid() {
        assert_eq!(voice("g", "Alice").resource(), "Alice");
        assert_eq!(voice("g", "  Alice \t B\u{7}ob\n").resource(), "Alice Bob");
        assert_eq!(voice("g", "Zoë 李").resource(), "Zoë 李");
        assert_eq!(voice("g", " \u{0} \n").resource(), "member");
        let long = "é".repeat(600);
        let r = voice("g", &long).resource();
        assert!(
            r.len() <= MAX_RESOURCE && r.chars().all(|c| c == 'é'),
            "{r}"
        );
        let words = format!("{} {}", "a".repeat(1000), "b".repeat(100));
        assert_eq!(voice("g", &words).resource(), "a".repeat(1000));
        for name in ["Alice", "Alice Bob", "Zoë 李", "member"] {
            let jid = format!("team42@groups.example.org/{}", voice("g", name).resource());
            assert!(xmpp_parsers::jid::Jid::new(&jid).is_ok(), "{jid}");
        }
    }
}
