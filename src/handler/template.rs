//! Handler argument templates: clsync's `%MACRO%` substitutions.
//!
//! A template is the list of handler arguments given after `--`. It is parsed
//! into tokens once, when the handler is built, and rendered to a fresh argv
//! of `OsString`s for every run, byte-exact (no UTF-8 assumption, no shell).
//! Inline macros (`%INCLUDE-LIST-PATH%`, `%EXCLUDE-LIST-PATH%`, `%label%`,
//! `%watch-dir%`, `%destination-dir%`, `%EVENT-MASK%`, `%TYPE%`) may sit
//! anywhere inside an argument
//! (`--include-from=%INCLUDE-LIST-PATH%`); list macros (`%RSYNC-ARGS%`,
//! `%INCLUDE-LIST%`) expand to several arguments and so must be a whole
//! argument. Text that looks like a macro but is not a known one is left as
//! it is, as clsync does.
//!
//! This module only substitutes: it does not decide what the values are
//! (the handler does), nor write any file.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// A substitution clsync knows in handler arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Macro {
    /// Path of the include-list file.
    IncludeListPath,
    /// Path of the exclude-list file.
    ExcludeListPath,
    /// clsync's default rsync arguments without the two directories
    /// (several arguments; whole argument only).
    RsyncArgs,
    /// The instance label (`-l`).
    Label,
    /// The watch directory.
    WatchDir,
    /// The destination as given (`-D`).
    DestinationDir,
    /// The relative paths to sync, one argument each (whole argument only).
    IncludeList,
    /// The inotify event bits of the path, as a decimal number.
    EventMask,
    /// `sync` or `initialsync` (shell mode).
    Type,
}

impl Macro {
    pub const ALL: [Macro; 9] = [
        Macro::IncludeListPath,
        Macro::ExcludeListPath,
        Macro::RsyncArgs,
        Macro::Label,
        Macro::WatchDir,
        Macro::DestinationDir,
        Macro::IncludeList,
        Macro::EventMask,
        Macro::Type,
    ];

    /// The name between the `%` signs, exactly as clsync spells it.
    pub fn name(self) -> &'static str {
        match self {
            Macro::IncludeListPath => "INCLUDE-LIST-PATH",
            Macro::ExcludeListPath => "EXCLUDE-LIST-PATH",
            Macro::RsyncArgs => "RSYNC-ARGS",
            Macro::Label => "label",
            Macro::WatchDir => "watch-dir",
            Macro::DestinationDir => "destination-dir",
            Macro::IncludeList => "INCLUDE-LIST",
            Macro::EventMask => "EVENT-MASK",
            Macro::Type => "TYPE",
        }
    }

    /// True for macros that expand to several arguments.
    pub fn is_list(self) -> bool {
        matches!(self, Macro::RsyncArgs | Macro::IncludeList)
    }

    fn from_name(name: &[u8]) -> Option<Macro> {
        Macro::ALL.into_iter().find(|m| m.name().as_bytes() == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "handler argument {index} ({arg:?}): %{name}% expands to several arguments, \
         so it must stand alone as a whole argument"
    )]
    ListMacroInsideArgument {
        index: usize,
        arg: String,
        name: &'static str,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Macro(Macro),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Arg {
    /// One output argument: text and inline macros concatenated.
    One(Vec<Piece>),
    /// A list macro: zero or more output arguments.
    List(Macro),
}

/// Values to substitute; anything left at its default renders empty.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    pub include_list_path: Option<&'a OsStr>,
    pub exclude_list_path: Option<&'a OsStr>,
    pub rsync_args: &'a [OsString],
    pub label: Option<&'a OsStr>,
    pub watch_dir: Option<&'a OsStr>,
    pub destination_dir: Option<&'a OsStr>,
    pub include_list: &'a [OsString],
    pub event_mask: Option<&'a OsStr>,
    pub type_name: Option<&'a OsStr>,
}

impl Context<'_> {
    fn inline(&self, m: Macro) -> &[u8] {
        let v = match m {
            Macro::IncludeListPath => self.include_list_path,
            Macro::ExcludeListPath => self.exclude_list_path,
            Macro::Label => self.label,
            Macro::WatchDir => self.watch_dir,
            Macro::DestinationDir => self.destination_dir,
            Macro::EventMask => self.event_mask,
            Macro::Type => self.type_name,
            Macro::RsyncArgs | Macro::IncludeList => None,
        };
        v.map(OsStr::as_bytes).unwrap_or_default()
    }

    fn list(&self, m: Macro) -> &[OsString] {
        match m {
            Macro::RsyncArgs => self.rsync_args,
            Macro::IncludeList => self.include_list,
            _ => &[],
        }
    }
}

/// A parsed argument template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    args: Vec<Arg>,
}

impl Template {
    /// Parses handler arguments. Fails only when a list macro is embedded in
    /// a longer argument.
    pub fn parse(args: &[OsString]) -> Result<Template, TemplateError> {
        let mut out = Vec::with_capacity(args.len());
        for (index, arg) in args.iter().enumerate() {
            let pieces = parse_arg(arg.as_bytes());
            let list = pieces.iter().find_map(|p| match p {
                Piece::Macro(m) if m.is_list() => Some(*m),
                _ => None,
            });
            match list {
                Some(m) if pieces.len() == 1 => out.push(Arg::List(m)),
                Some(m) => {
                    return Err(TemplateError::ListMacroInsideArgument {
                        index: index + 1,
                        arg: crate::path::display(arg.as_bytes()),
                        name: m.name(),
                    })
                }
                None => out.push(Arg::One(pieces)),
            }
        }
        Ok(Template { args: out })
    }

    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// True when `m` occurs anywhere in the template.
    pub fn uses(&self, m: Macro) -> bool {
        self.args.iter().any(|a| match a {
            Arg::List(l) => *l == m,
            Arg::One(pieces) => pieces.contains(&Piece::Macro(m)),
        })
    }

    /// True when some argument is exactly the literal text `lit` (no macro).
    pub fn has_literal_arg(&self, lit: &[u8]) -> bool {
        self.args.iter().any(|a| match a {
            Arg::One(pieces) => match pieces.as_slice() {
                [Piece::Text(t)] => t == lit,
                [] => lit.is_empty(),
                _ => false,
            },
            Arg::List(_) => false,
        })
    }

    /// The argv for one run.
    pub fn render(&self, ctx: &Context<'_>) -> Vec<OsString> {
        let mut out = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            match arg {
                Arg::List(m) => out.extend(ctx.list(*m).iter().cloned()),
                Arg::One(pieces) => {
                    let mut bytes = Vec::new();
                    for p in pieces {
                        match p {
                            Piece::Text(t) => bytes.extend_from_slice(t),
                            Piece::Macro(m) => bytes.extend_from_slice(ctx.inline(*m)),
                        }
                    }
                    out.push(OsString::from_vec(bytes));
                }
            }
        }
        out
    }
}

/// Splits one argument into text and known macros. At a `%`, the bytes up to
/// the next `%` are a macro name if they name a known macro; otherwise the
/// `%` is text and scanning goes on from the byte after it.
fn parse_arg(arg: &[u8]) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = Vec::new();
    let mut i = 0;
    while i < arg.len() {
        if arg[i] == b'%' {
            if let Some(len) = arg[i + 1..].iter().position(|&b| b == b'%') {
                if let Some(m) = Macro::from_name(&arg[i + 1..i + 1 + len]) {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Macro(m));
                    i += len + 2;
                    continue;
                }
            }
        }
        text.push(arg[i]);
        i += 1;
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn ctx_values() -> (Vec<OsString>, Vec<OsString>) {
        (
            os(&["-aH", "--delete", "--exclude=*"]),
            vec![
                OsString::from("a b"),
                OsString::from_vec(b"x\xff/\n".to_vec()),
            ],
        )
    }

    fn render(args: &[&str]) -> Vec<OsString> {
        let (rsync_args, include_list) = ctx_values();
        let ctx = Context {
            include_list_path: Some(OsStr::new("/tmp/l/inc")),
            exclude_list_path: Some(OsStr::new("/tmp/l/exc")),
            rsync_args: &rsync_args,
            label: Some(OsStr::new("lab")),
            watch_dir: Some(OsStr::new("/src")),
            destination_dir: Some(OsStr::new("host:/dst")),
            include_list: &include_list,
            event_mask: Some(OsStr::new("1073742080")),
            type_name: Some(OsStr::new("initialsync")),
        };
        Template::parse(&os(args)).unwrap().render(&ctx)
    }

    #[test]
    fn inline_macros_anywhere_in_an_argument() {
        assert_eq!(
            render(&[
                "--include-from=%INCLUDE-LIST-PATH%",
                "%EXCLUDE-LIST-PATH%",
                "[%label%]",
                "%watch-dir%/",
                "%destination-dir%/%label%.d",
            ]),
            os(&[
                "--include-from=/tmp/l/inc",
                "/tmp/l/exc",
                "[lab]",
                "/src/",
                "host:/dst/lab.d",
            ])
        );
    }

    #[test]
    fn event_mask_and_type_work_mid_argument() {
        assert_eq!(
            render(&["mask=%EVENT-MASK%,", "%TYPE%", "%TYPE%:%label%", "%type%"]),
            os(&[
                "mask=1073742080,",
                "initialsync",
                "initialsync:lab",
                "%type%"
            ])
        );
    }

    #[test]
    fn list_macros_expand_to_several_arguments() {
        let (rsync_args, include_list) = ctx_values();
        let mut want = vec![OsString::from("pre")];
        want.extend(rsync_args);
        want.push(OsString::from("mid"));
        want.extend(include_list);
        want.push(OsString::from("post"));
        assert_eq!(
            render(&["pre", "%RSYNC-ARGS%", "mid", "%INCLUDE-LIST%", "post"]),
            want
        );
    }

    #[test]
    fn empty_list_macro_yields_no_argument() {
        let t = Template::parse(&os(&["a", "%INCLUDE-LIST%", "b"])).unwrap();
        assert_eq!(t.render(&Context::default()), os(&["a", "b"]));
    }

    #[test]
    fn list_macro_inside_an_argument_is_refused() {
        let e = Template::parse(&os(&["x", "--args=%RSYNC-ARGS%"])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("argument 2"), "{msg}");
        assert!(msg.contains("%RSYNC-ARGS%"), "{msg}");
        assert!(Template::parse(&os(&["%INCLUDE-LIST%%label%"])).is_err());
    }

    #[test]
    fn unknown_macros_and_stray_percents_stay() {
        assert_eq!(
            render(&[
                "%nope%",
                "100%",
                "%",
                "%%",
                "50% %label%",
                "%%label%%",
                "%LABEL%"
            ]),
            os(&["%nope%", "100%", "%", "%%", "50% lab", "%lab%", "%LABEL%"])
        );
    }

    #[test]
    fn uses_and_literal_args() {
        let t = Template::parse(&os(&[
            "--from0",
            "--x=%INCLUDE-LIST-PATH%",
            "",
            "%RSYNC-ARGS%",
        ]))
        .unwrap();
        assert!(t.uses(Macro::IncludeListPath));
        assert!(t.uses(Macro::RsyncArgs));
        assert!(!t.uses(Macro::ExcludeListPath));
        assert!(t.has_literal_arg(b"--from0"));
        assert!(t.has_literal_arg(b""));
        assert!(!t.has_literal_arg(b"--x="));
        assert!(!Template::parse(&[]).unwrap().has_literal_arg(b""));
    }

    #[test]
    fn non_utf8_bytes_pass_through() {
        let arg = OsString::from_vec(b"\xff%label%\xfe".to_vec());
        let t = Template::parse(&[arg]).unwrap();
        let label = OsString::from_vec(b"\x80".to_vec());
        let ctx = Context {
            label: Some(&label),
            ..Context::default()
        };
        assert_eq!(
            t.render(&ctx),
            vec![OsString::from_vec(b"\xff\x80\xfe".to_vec())]
        );
    }

    fn contains_known_macro(b: &[u8]) -> bool {
        Macro::ALL.iter().any(|m| {
            let pat = format!("%{}%", m.name());
            b.windows(pat.len()).any(|w| w == pat.as_bytes())
        })
    }

    #[derive(Clone, Debug)]
    enum Seg {
        Text(Vec<u8>),
        Macro(Macro),
    }

    fn seg() -> impl Strategy<Value = Seg> {
        prop_oneof![
            proptest::collection::vec(any::<u8>().prop_filter("no %", |b| *b != b'%'), 0..8)
                .prop_map(Seg::Text),
            proptest::sample::select(Macro::ALL.to_vec())
                .prop_filter("inline only", |m| !m.is_list())
                .prop_map(Seg::Macro),
        ]
    }

    proptest! {
        #[test]
        fn no_macros_renders_identity(
            args in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![Just(b'%'), Just(b'-'), Just(b'L'), any::<u8>()], 0..24),
                0..6)
        ) {
            prop_assume!(!args.iter().any(|a| contains_known_macro(a)));
            let args: Vec<OsString> = args.into_iter().map(OsString::from_vec).collect();
            let t = Template::parse(&args).unwrap();
            prop_assert_eq!(t.render(&Context::default()), args);
        }

        #[test]
        fn parse_never_panics(
            args in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..40), 0..6),
            names in proptest::collection::vec(proptest::sample::select(Macro::ALL.to_vec()), 0..4),
        ) {
            let mut args: Vec<OsString> = args.into_iter().map(OsString::from_vec).collect();
            // Splice macro names into random places so that both paths run.
            for (i, m) in names.into_iter().enumerate() {
                if let Some(a) = args.get_mut(i) {
                    a.push(format!("%{}%", m.name()));
                }
            }
            if let Ok(t) = Template::parse(&args) {
                let _ = t.render(&Context::default());
            }
        }

        #[test]
        fn inline_macros_render_to_their_values(segs in proptest::collection::vec(seg(), 0..8)) {
            let mut arg = Vec::new();
            let mut want = Vec::new();
            let value = |m: Macro| format!("<{}>", m.name()).into_bytes();
            for s in &segs {
                match s {
                    Seg::Text(t) => { arg.extend_from_slice(t); want.extend_from_slice(t); }
                    Seg::Macro(m) => {
                        arg.extend_from_slice(format!("%{}%", m.name()).as_bytes());
                        want.extend(value(*m));
                    }
                }
            }
            let vals: Vec<OsString> = [Macro::IncludeListPath, Macro::ExcludeListPath, Macro::Label,
                Macro::WatchDir, Macro::DestinationDir, Macro::EventMask, Macro::Type]
                .iter().map(|m| OsString::from_vec(value(*m))).collect();
            let ctx = Context {
                include_list_path: Some(&vals[0]),
                exclude_list_path: Some(&vals[1]),
                label: Some(&vals[2]),
                watch_dir: Some(&vals[3]),
                destination_dir: Some(&vals[4]),
                event_mask: Some(&vals[5]),
                type_name: Some(&vals[6]),
                ..Context::default()
            };
            let t = Template::parse(&[OsString::from_vec(arg)]).unwrap();
            prop_assert_eq!(t.render(&ctx), vec![OsString::from_vec(want)]);
        }
    }
}
