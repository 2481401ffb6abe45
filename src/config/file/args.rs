//! From a block's settings to clap words: every key is checked against
//! the long options of the command line (with a hint for a near miss, and
//! clsync's options livesync does not take named as such), `%option%`
//! references are substituted, handler arguments are split into words, and
//! the default file is searched for. The file's syntax and blocks are
//! `super`'s.

use super::*;

/// A block's effective settings: each key from the nearest block of the
/// inheritance chain that sets it, in reading order (the chosen block top
/// to bottom, then its parent, …). `config-block-inherits` is not a setting.
#[derive(Debug)]
pub struct Settings<'a> {
    pub(super) file: &'a ConfigFile,
    pub(super) chain: Vec<&'a Block>,
    pub(super) entries: Vec<&'a Entry>,
}

impl<'a> Settings<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Entry> {
        self.entries.iter().copied().find(|e| e.key == key)
    }

    pub fn entries(&self) -> impl Iterator<Item = &'a Entry> + '_ {
        self.entries.iter().copied()
    }

    /// Names of the blocks the settings came from, chosen block first.
    pub fn chain(&self) -> Vec<&'a str> {
        self.chain.iter().map(|b| b.name.as_str()).collect()
    }

    fn error(&self, line: usize, kind: ErrorKind) -> FileError {
        self.file.error(Some(line), kind)
    }
}

/// What a config file block contributes, ready to go in front of the
/// command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileArgs {
    /// `--long=value` / `--flag` words for the options the command line did
    /// not give, in reading order, each already checked by clap.
    pub words: Vec<OsString>,
    /// The `--` key's words, when the command line gave no handler
    /// arguments.
    pub handler_args: Option<Vec<OsString>>,
    /// The `---` key's words.
    pub initial_handler_args: Vec<OsString>,
    /// Unknown keys, one `file:line: …` line each: ignored, as clsync does.
    pub warnings: Vec<String>,
}

/// What the file needs to know about one command line option.
#[derive(Clone, Debug)]
pub(super) struct Opt {
    short: Option<char>,
    /// Takes a value (not a flag).
    takes_value: bool,
    /// Repeatable: a comma list in the file.
    list: bool,
    /// Default values, joined with commas.
    default: Option<OsString>,
}

/// The options of `cmd` by long name (positionals left out).
pub(super) fn options(cmd: &Command) -> BTreeMap<String, Opt> {
    let mut out = BTreeMap::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let defaults = arg.get_default_values();
        out.insert(
            long.to_string(),
            Opt {
                short: arg.get_short(),
                takes_value: arg.get_action().takes_values(),
                list: matches!(arg.get_action(), ArgAction::Append),
                default: (!defaults.is_empty())
                    .then(|| join_commas(defaults.iter().map(|d| d.as_bytes()))),
            },
        );
    }
    out
}

pub(super) fn join_commas<'b>(parts: impl Iterator<Item = &'b [u8]>) -> OsString {
    let mut out = Vec::new();
    for (i, p) in parts.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(p);
    }
    OsString::from_vec(out)
}

/// Why a clsync option that livesync does not have is left out, and what
/// to do instead; `None` when `name` (a long name without dashes) is not
/// one. The same words serve a config file key and a command line option.
pub fn clsync_only_reason(name: &str) -> Option<String> {
    if !CLSYNC_ONLY.contains(&name) {
        return None;
    }
    Some(match name {
        "auto-add-rules-w" => "auto-add-rules-w is a clsync option that livesync does not support \
             (clsync's own builds leave it out too): livesync adds no walk rules by itself; write \
             `+w` rules for the directories that lead to what your `+` rules permit"
            .to_string(),
        _ => format!("{name} is a clsync option that livesync does not support"),
    })
}

/// Edit distance, for suggestions.
pub(super) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// What to tell a user who wrote the unknown key `key`.
pub(super) fn unknown_key_hint(key: &str, opts: &BTreeMap<String, Opt>) -> String {
    let bare = key.trim_start_matches('-');
    let by_short = |c: &str| {
        let mut chars = c.chars();
        match (chars.next(), chars.next()) {
            (Some(ch), None) => opts
                .iter()
                .find(|(_, o)| o.short == Some(ch))
                .map(|(l, _)| l.clone()),
            _ => None,
        }
    };
    if bare != key || bare.chars().count() == 1 {
        if opts.contains_key(bare) {
            return format!("write the option name without dashes: `{bare} = …`");
        }
        if let Some(long) = by_short(bare) {
            return format!("keys are long option names: write `{long} = …`");
        }
    }
    if let Some(reason) = clsync_only_reason(key) {
        return reason;
    }
    // Keys of older clsync versions, as its own example configs still use.
    match key {
        "syslog" => return "for log lines to syslog write `output = syslog`".to_string(),
        "rules-path" => return "did you mean `rules-file`?".to_string(),
        _ => {}
    }
    let best = opts
        .keys()
        .filter(|k| !COMMAND_LINE_ONLY.contains(&k.as_str()))
        .map(String::as_str)
        .chain([INHERITS, INITIAL_HANDLER_ARGS])
        .map(|k| (distance(key, k), k))
        .min();
    match best {
        Some((d, k)) if d <= 2 || (d <= 4 && k.starts_with(key)) => {
            format!("did you mean `{k}`?")
        }
        _ => "keys are long option names without dashes (see livesync --help)".to_string(),
    }
}

/// `1`/`0` and friends; empty is unset.
pub(super) fn parse_flag(v: &[u8]) -> Option<bool> {
    match v.to_ascii_lowercase().as_slice() {
        b"1" | b"true" | b"yes" | b"on" => Some(true),
        b"" | b"0" | b"false" | b"no" | b"off" => Some(false),
        _ => None,
    }
}

/// Splits a handler argument line into words (see the module docs).
pub fn split_args(value: &[u8]) -> Result<Vec<OsString>, String> {
    let mut words = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        match b {
            b' ' | b'\t' => {
                if let Some(w) = cur.take() {
                    words.push(OsString::from_vec(w));
                }
                i += 1;
            }
            b'\'' => {
                let w = cur.get_or_insert_with(Vec::new);
                let Some(len) = value[i + 1..].iter().position(|&c| c == b'\'') else {
                    return Err(format!(
                        "the ' at byte {} is never closed; close the quote",
                        i + 1
                    ));
                };
                w.extend_from_slice(&value[i + 1..i + 1 + len]);
                i += len + 2;
            }
            b'"' => {
                let w = cur.get_or_insert_with(Vec::new);
                let start = i;
                i += 1;
                loop {
                    match value.get(i) {
                        None => {
                            return Err(format!(
                                "the \" at byte {} is never closed; close the quote",
                                start + 1
                            ))
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if matches!(value.get(i + 1), Some(b'"' | b'\\')) => {
                            w.push(value[i + 1]);
                            i += 2;
                        }
                        Some(&c) => {
                            w.push(c);
                            i += 1;
                        }
                    }
                }
            }
            _ => {
                cur.get_or_insert_with(Vec::new).push(b);
                i += 1;
            }
        }
    }
    if let Some(w) = cur {
        words.push(OsString::from_vec(w));
    }
    Ok(words)
}

/// Resolves `%option%` references against the final settings.
pub(super) struct Resolver<'s, 'a> {
    settings: &'s Settings<'a>,
    opts: &'s BTreeMap<String, Opt>,
    cli: &'s CommandLine,
    done: HashMap<String, OsString>,
    /// Keys being expanded, outermost first (for cycles).
    stack: Vec<String>,
}

impl<'s, 'a> Resolver<'s, 'a> {
    /// The value of `entry` with its references replaced.
    fn expanded(&mut self, entry: &'a Entry) -> Result<OsString, FileError> {
        if let Some(v) = self.done.get(&entry.key) {
            return Ok(v.clone());
        }
        if let Some(pos) = self.stack.iter().position(|k| *k == entry.key) {
            let mut chain: Vec<String> = self.stack[pos..].to_vec();
            chain.push(entry.key.clone());
            return Err(self.settings.error(
                entry.line,
                ErrorKind::ReferenceCycle {
                    chain: chain.join(" → "),
                },
            ));
        }
        self.stack.push(entry.key.clone());
        let v = entry.value.as_bytes();
        let mut out = Vec::with_capacity(v.len());
        let mut i = 0;
        while i < v.len() {
            if v[i] != b'%' {
                out.push(v[i]);
                i += 1;
                continue;
            }
            if v.get(i + 1) == Some(&b'%') {
                out.push(b'%');
                i += 2;
                continue;
            }
            let Some(len) = v[i + 1..].iter().position(|&c| c == b'%') else {
                out.extend_from_slice(&v[i..]);
                break;
            };
            let name = &v[i + 1..i + 1 + len];
            let is_name = name.first().is_some_and(u8::is_ascii_lowercase)
                && name
                    .iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
            let is_macro = name.first().is_some_and(u8::is_ascii_uppercase);
            if is_name {
                let name = String::from_utf8_lossy(name).into_owned();
                out.extend_from_slice(self.value_of(&name, entry)?.as_bytes());
                i += len + 2;
            } else if is_macro {
                out.extend_from_slice(&v[i..i + len + 2]);
                i += len + 2;
            } else {
                out.push(b'%');
                i += 1;
            }
        }
        self.stack.pop();
        let out = OsString::from_vec(out);
        self.done.insert(entry.key.clone(), out.clone());
        Ok(out)
    }

    /// The final value of option `name`, referenced from `from`.
    fn value_of(&mut self, name: &str, from: &'a Entry) -> Result<OsString, FileError> {
        let Some(opt) = self.opts.get(name) else {
            let hint = self
                .opts
                .keys()
                .map(|k| (distance(name, k), k))
                .min()
                .filter(|(d, _)| *d <= 2)
                .map(|(_, k)| format!("did you mean %{k}%? or "))
                .unwrap_or_default();
            return Err(self.settings.error(
                from.line,
                ErrorKind::UnknownReference {
                    key: from.key.clone(),
                    name: name.to_string(),
                    hint,
                },
            ));
        };
        if let Some(raw) = self.cli.raw(name) {
            return Ok(join_commas(raw.iter().map(|r| r.as_bytes())));
        }
        if name == "config-file" {
            return Ok(self.settings.file.path.clone().into_os_string());
        }
        if let Some(e) = self.settings.get(name) {
            return self.expanded(e);
        }
        match &opt.default {
            Some(d) => Ok(d.clone()),
            None => Err(self.settings.error(
                from.line,
                ErrorKind::UnsetReference {
                    key: from.key.clone(),
                    name: name.to_string(),
                },
            )),
        }
    }
}

/// The first line of a clap error, without the `error: ` prefix, control
/// characters (which it may quote from the value) escaped.
pub(super) fn clap_reason(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid value");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    first
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Turns `settings` into clap words for `cmd`, leaving out every option
/// `cli` gave, and checks each value with clap. Unknown keys are left out
/// with a warning (in [`FileArgs::warnings`]), even where the command line
/// overrides them.
pub fn file_args(
    settings: &Settings<'_>,
    cmd: &Command,
    cli: &CommandLine,
) -> Result<FileArgs, FileError> {
    let opts = options(cmd);
    let mut out = FileArgs::default();
    // Every key of every block in the chain, overridden or not.
    for block in &settings.chain {
        for e in &block.entries {
            let key = e.key.as_str();
            if [INHERITS, HANDLER_ARGS, INITIAL_HANDLER_ARGS].contains(&key) {
                continue;
            }
            if COMMAND_LINE_ONLY.contains(&key) {
                return Err(settings.error(
                    e.line,
                    ErrorKind::CommandLineOnly {
                        key: key.to_string(),
                    },
                ));
            }
            if !opts.contains_key(key) {
                let unknown = settings.error(
                    e.line,
                    ErrorKind::UnknownOption {
                        key: key.to_string(),
                        hint: unknown_key_hint(key, &opts),
                    },
                );
                out.warnings
                    .push(format!("{unknown} (the line is ignored, as clsync does)"));
            }
        }
    }
    let mut resolver = Resolver {
        settings,
        opts: &opts,
        cli,
        done: HashMap::new(),
        stack: Vec::new(),
    };
    for e in settings.entries() {
        let key = e.key.as_str();
        if key == HANDLER_ARGS || key == INITIAL_HANDLER_ARGS {
            let words = split_args(e.value.as_bytes()).map_err(|reason| {
                settings.error(
                    e.line,
                    ErrorKind::HandlerArgs {
                        key: key.to_string(),
                        value: shown(e.value.as_bytes()),
                        reason,
                    },
                )
            })?;
            if key == INITIAL_HANDLER_ARGS {
                out.initial_handler_args = words;
            } else if !cli.gave(HANDLER_ARGS) {
                out.handler_args = Some(words);
            }
            continue;
        }
        if cli.gave(key) {
            continue;
        }
        let Some(opt) = opts.get(key) else {
            continue; // unknown: warned about above
        };
        let value = resolver.expanded(e)?;
        let v = value.as_bytes();
        let mut words: Vec<OsString> = Vec::new();
        let word = |item: &[u8]| {
            let mut w = format!("--{key}=").into_bytes();
            w.extend_from_slice(item);
            OsString::from_vec(w)
        };
        if !opt.takes_value {
            match parse_flag(v) {
                Some(true) => words.push(format!("--{key}").into()),
                Some(false) => {}
                None => {
                    return Err(settings.error(
                        e.line,
                        ErrorKind::BadFlag {
                            key: key.to_string(),
                            value: shown(v),
                        },
                    ))
                }
            }
        } else if opt.list {
            words.extend(
                v.split(|&b| b == b',')
                    .map(|item| trim_start(trim_end(item)))
                    .filter(|item| !item.is_empty())
                    .map(word),
            );
        } else if !v.is_empty() {
            words.push(word(v));
        }
        if words.is_empty() {
            continue;
        }
        let check = std::iter::once(OsString::from("livesync")).chain(words.iter().cloned());
        if let Err(err) = cmd.clone().try_get_matches_from(check) {
            return Err(settings.error(
                e.line,
                ErrorKind::BadValue {
                    key: key.to_string(),
                    value: shown(v),
                    reason: clap_reason(&err),
                },
            ));
        }
        out.words.extend(words);
    }
    Ok(out)
}

/// The default config files, in the order they are tried.
pub fn default_paths(home: Option<&Path>) -> Vec<PathBuf> {
    let home = home.filter(|h| !h.as_os_str().is_empty());
    let mut out = Vec::new();
    if let Some(h) = home {
        out.push(h.join(".livesync.conf"));
    }
    out.push(PathBuf::from("/etc/livesync/livesync.conf"));
    if let Some(h) = home {
        out.push(h.join(".clsync.conf"));
    }
    out.push(PathBuf::from("/etc/clsync/clsync.conf"));
    out
}

/// Parses the first of `paths` that exists and can be read. Absent files
/// are skipped silently; unreadable ones with a warning pushed on
/// `warnings`. A file that is read but malformed is an error.
pub fn find_default(
    paths: &[PathBuf],
    warnings: &mut Vec<String>,
) -> Result<Option<ConfigFile>, FileError> {
    for p in paths {
        let shown = path::display_os(p);
        let md = match std::fs::metadata(p) {
            Ok(md) => md,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                continue
            }
            Err(e) => {
                warnings.push(format!("skipped config file {shown}: {e}"));
                continue;
            }
        };
        if !md.is_file() || md.len() > MAX_SIZE {
            warnings.push(format!(
                "skipped config file {shown}: not a regular file of at most {MAX_SIZE} bytes"
            ));
            continue;
        }
        match std::fs::read(p) {
            Ok(bytes) => return ConfigFile::parse(p, &bytes).map(Some),
            Err(e) => warnings.push(format!("skipped config file {shown}: {e}")),
        }
    }
    Ok(None)
}
