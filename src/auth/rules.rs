//! Access rules: which users may pull, push or delete which repositories, matched with
//! globs (`*` within one path segment, `**` across any number of segments). Pure.

use serde::Deserialize;

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

/// One `auth.access` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// User names; `*` is any authenticated user.
    pub users: Vec<String>,
    pub repositories: Vec<String>,
    pub actions: Vec<Action>,
}

/// The access policy: anonymous pull patterns plus rules for authenticated users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub anonymous_pull: Vec<String>,
    /// `None`: every authenticated user may do everything (registry:2's htpasswd behaviour).
    pub rules: Option<Vec<AccessRule>>,
    /// Users who may only pull, whatever the rules grant (the operator's pull-Secret user).
    pub pull_only: Vec<String>,
}

impl Policy {
    /// Checks patterns once at startup; returns a message saying what to fix.
    pub fn validate(&self) -> Result<(), String> {
        let rule_patterns = self
            .rules
            .iter()
            .flatten()
            .flat_map(|r| r.repositories.iter());
        for pattern in self.anonymous_pull.iter().chain(rule_patterns) {
            let ok = !pattern.is_empty()
                && pattern.split('/').all(|seg| {
                    !seg.is_empty()
                        && seg.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-*".contains(&b)
                        })
                });
            if !ok {
                return Err(format!(
                    "repository pattern {pattern:?} is invalid: use lowercase repository names with `*` (one path segment) or `**` (any depth), e.g. \"team/*\" or \"public/**\""
                ));
            }
        }
        for rule in self.rules.iter().flatten() {
            if rule.users.is_empty() || rule.repositories.is_empty() || rule.actions.is_empty() {
                return Err("every auth.access rule needs users, repositories and actions".into());
            }
        }
        Ok(())
    }

    /// Whether `who` may do `action` on `repository`. A signed-in user may always do what
    /// an anonymous caller may: clients send stored credentials on every request.
    pub fn allows(&self, who: &Identity, action: Action, repository: &str) -> bool {
        self.grants(who, action, |patterns| {
            patterns.iter().any(|p| glob(p, repository))
        })
    }

    /// Whether `who` may do `action` on every repository there is or will be: granted by a
    /// `**` pattern (or by no rules at all). Conservative: patterns that happen to cover
    /// every name some other way do not count.
    pub fn allows_everywhere(&self, who: &Identity, action: Action) -> bool {
        self.grants(who, action, |patterns| patterns.iter().any(|p| p == "**"))
    }

    /// The one decision behind [`Policy::allows`] and [`Policy::allows_everywhere`]:
    /// `covers` says whether a rule's (or anonymous pull's) patterns cover what is asked.
    fn grants(&self, who: &Identity, action: Action, covers: impl Fn(&[String]) -> bool) -> bool {
        let anonymous = action == Action::Pull && covers(&self.anonymous_pull);
        match who {
            Identity::Anonymous => anonymous,
            Identity::User(name) if action != Action::Pull && self.pull_only.contains(name) => {
                false
            }
            Identity::User(name) => match &self.rules {
                None => true,
                Some(rules) => {
                    anonymous
                        || rules.iter().any(|r| {
                            r.actions.contains(&action)
                                && r.users.iter().any(|u| u == "*" || u == name)
                                && covers(&r.repositories)
                        })
                }
            },
        }
    }

    /// True if anonymous callers may do anything at all.
    pub fn anonymous_allowed(&self) -> bool {
        !self.anonymous_pull.is_empty()
    }
}

/// Matches a repository name against a pattern.
pub fn glob(pattern: &str, name: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let name: Vec<&str> = name.split('/').collect();
    match_segments(&pattern, &name)
}

fn match_segments(pattern: &[&str], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((&"**", rest)) => (0..=name.len()).any(|skip| match_segments(rest, &name[skip..])),
        Some((seg, rest)) => name.split_first().is_some_and(|(first, tail)| {
            match_segment(seg.as_bytes(), first.as_bytes()) && match_segments(rest, tail)
        }),
    }
}

/// `*` matches any run of characters within one segment.
fn match_segment(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| match_segment(rest, &text[skip..])),
        Some((c, rest)) => text
            .split_first()
            .is_some_and(|(t, tail)| t == c && match_segment(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("**", "a/b/c"));
        assert!(glob("public/**", "public/x/y"));
        assert!(glob("public/**", "public"));
        assert!(!glob("public/**", "publicity/x"));
        assert!(glob("team/*", "team/app"));
        assert!(!glob("team/*", "team/app/sub"));
        assert!(glob("team-*/app", "team-a/app"));
        assert!(glob("*/db", "x/db"));
        assert!(glob("exact/name", "exact/name"));
        assert!(!glob("exact/name", "exact/names"));
        assert!(glob("a/**/z", "a/z") && glob("a/**/z", "a/b/c/z") && !glob("a/**/z", "a/b/c"));
    }

    fn user(n: &str) -> Identity {
        Identity::User(n.into())
    }

    #[test]
    fn policy_decisions() {
        let open = Policy::default();
        assert!(open.allows(&user("x"), Action::Delete, "any/repo"));
        assert!(!open.allows(&Identity::Anonymous, Action::Pull, "any/repo"));

        let p = Policy {
            anonymous_pull: vec!["public/**".into()],
            rules: Some(vec![
                AccessRule {
                    users: vec!["*".into()],
                    repositories: vec!["**".into()],
                    actions: vec![Action::Pull],
                },
                AccessRule {
                    users: vec!["ci".into()],
                    repositories: vec!["apps/**".into()],
                    actions: vec![Action::Push, Action::Delete],
                },
            ]),
            pull_only: vec![],
        };
        assert!(p.validate().is_ok());
        assert!(p.allows(&Identity::Anonymous, Action::Pull, "public/img"));
        assert!(!p.allows(&Identity::Anonymous, Action::Pull, "private/img"));
        assert!(!p.allows(&Identity::Anonymous, Action::Push, "public/img"));
        assert!(p.allows(&user("reader"), Action::Pull, "private/img"));
        assert!(!p.allows(&user("reader"), Action::Push, "apps/web"));
        assert!(p.allows(&user("ci"), Action::Push, "apps/web"));
        assert!(!p.allows(&user("ci"), Action::Push, "other/web"));
        // Users keep what anonymous callers have.
        let narrow = Policy {
            anonymous_pull: vec!["public/**".into()],
            rules: Some(vec![AccessRule {
                users: vec!["ci".into()],
                repositories: vec!["apps/**".into()],
                actions: vec![Action::Push],
            }]),
            pull_only: vec![],
        };
        assert!(narrow.allows(&user("ci"), Action::Pull, "public/img"));
        assert!(!narrow.allows(&user("ci"), Action::Push, "public/img"));
    }

    #[test]
    fn everywhere_takes_a_double_star() {
        let rule = |users: &[&str], repos: &[&str]| AccessRule {
            users: users.iter().map(|s| s.to_string()).collect(),
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            actions: vec![Action::Pull],
        };
        let p = Policy {
            anonymous_pull: vec!["public/**".into()],
            rules: Some(vec![rule(&["ops"], &["**"]), rule(&["dev"], &["apps/**"])]),
            pull_only: vec![],
        };
        assert!(p.allows_everywhere(&user("ops"), Action::Pull));
        assert!(!p.allows_everywhere(&user("ops"), Action::Delete));
        assert!(!p.allows_everywhere(&user("dev"), Action::Pull));
        assert!(!p.allows_everywhere(&Identity::Anonymous, Action::Pull));
        let open = Policy {
            anonymous_pull: vec!["**".into()],
            ..p.clone()
        };
        assert!(open.allows_everywhere(&Identity::Anonymous, Action::Pull));
        assert!(open.allows_everywhere(&user("dev"), Action::Pull));
        let no_rules = Policy { rules: None, ..p };
        assert!(no_rules.allows_everywhere(&user("anyone"), Action::Delete));
    }

    #[test]
    fn pull_only_users_never_push_or_delete_whatever_the_rules_say() {
        let everything = AccessRule {
            users: vec!["*".into()],
            repositories: vec!["**".into()],
            actions: vec![Action::Pull, Action::Push, Action::Delete],
        };
        for rules in [None, Some(vec![everything])] {
            let p = Policy {
                anonymous_pull: vec![],
                rules,
                pull_only: vec!["puller".into()],
            };
            assert!(p.allows(&user("puller"), Action::Pull, "a/b"));
            assert!(!p.allows(&user("puller"), Action::Push, "a/b"));
            assert!(!p.allows(&user("puller"), Action::Delete, "a/b"));
            assert!(p.allows(&user("admin"), Action::Delete, "a/b"));
        }
    }

    #[test]
    fn invalid_patterns_explain_the_fix() {
        let p = Policy {
            anonymous_pull: vec!["Public/*".into()],
            rules: None,
            pull_only: vec![],
        };
        assert!(p.validate().unwrap_err().contains("lowercase"));
        let p = Policy {
            anonymous_pull: vec!["a//b".into()],
            rules: None,
            pull_only: vec![],
        };
        assert!(p.validate().is_err());
        let p = Policy {
            anonymous_pull: vec![],
            rules: Some(vec![AccessRule {
                users: vec![],
                repositories: vec!["**".into()],
                actions: vec![Action::Pull],
            }]),
            pull_only: vec![],
        };
        assert!(p.validate().unwrap_err().contains("users"));
    }
}
