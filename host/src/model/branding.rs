//! The login page's branding, in Auth0's shapes: the settings of
//! `/api/v2/branding` (colours, logo, favicon, font) and the Universal
//! Login page template of `/api/v2/branding/templates/universal-login`.
//!
//! Everything here is checked when it is parsed, so whatever the page
//! renders from a [`Branding`] is already known to be safe in its place:
//! a colour is `#rgb` or `#rrggbb` (nothing else can reach a style sheet),
//! a URL is absolute https (or http to a loopback host, for tests). The
//! page escapes them again where it writes them.
//!
//! The template is the operator's page around Waypass's widget. Waypass
//! fills Auth0's two tags (`{%- auth0:head -%}`, `{%- auth0:widget -%}`)
//! and a few of its Liquid variables (others write nothing, as Liquid
//! writes an undefined variable; `assign` is accepted and writes nothing).
//! A Liquid tag that would shape the page (`if`, `for`, …) is refused when
//! the template is stored, rather than shown as text or half run.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::Url;

/// Longest URL accepted (logo, favicon, font): browsers and CDNs take
/// 2 KiB everywhere; a longer one is a mistake or an attempt to bloat
/// every login page.
pub const MAX_URL_BYTES: usize = 2048;

/// Largest page template accepted: Auth0 caps a template at 100 KB, and
/// every login page carries it whole.
pub const MAX_TEMPLATE_BYTES: usize = 100 * 1024;

/// Auth0's answer to a template without its tags, word for word (tools
/// written against Auth0 match on it).
pub const TEMPLATE_TAGS_MESSAGE: &str =
    "The template must contain a single auth0:head tag and at least one auth0:widget tag.";

/// Why branding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrandingError {
    #[error("`{0}` is not a colour: use #rgb or #rrggbb")]
    Color(String),
    #[error("`{url}` is not a usable URL: {why}")]
    Url { url: String, why: &'static str },
    #[error("a gradient's type must be `linear-gradient`, not `{0}`")]
    GradientType(String),
    #[error("a gradient's angle_deg must be between 0 and 360, not {0}")]
    GradientAngle(i64),
    #[error("{TEMPLATE_TAGS_MESSAGE}")]
    TemplateTags,
    #[error("the template is over {MAX_TEMPLATE_BYTES} bytes")]
    TemplateTooLarge,
    #[error("the template has an unclosed `{0}`")]
    TemplateUnclosed(&'static str),
    #[error(
        "the template uses `{0}`: of Liquid's tags Waypass runs only auth0:head, auth0:widget \
         and assign, and fills the variables {VARIABLES_LIST}"
    )]
    TemplateUnsupported(String),
}

// ---- settings ----

/// A colour as CSS writes it: `#rgb` or `#rrggbb` (hex digits only), so it
/// can be written into a style sheet as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Color(String);

impl Color {
    pub fn parse(text: &str) -> Result<Self, BrandingError> {
        let digits = text
            .strip_prefix('#')
            .ok_or_else(|| BrandingError::Color(text.to_owned()))?;
        if matches!(digits.len(), 3 | 6) && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(BrandingError::Color(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The colour's red, green and blue (0–255).
    pub fn rgb(&self) -> [u8; 3] {
        let digits = &self.0[1..];
        let channel = |i: usize| -> u8 {
            if digits.len() == 3 {
                let v = u8::from_str_radix(&digits[i..=i], 16).unwrap_or(0);
                v * 17
            } else {
                u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).unwrap_or(0)
            }
        };
        [channel(0), channel(1), channel(2)]
    }

    /// Whether dark text reads better on this colour than white (WCAG 2.x
    /// relative luminance: above 0.179 white's contrast ratio is the lower).
    pub fn is_light(&self) -> bool {
        let linear = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        let [r, g, b] = self.rgb();
        0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b) > 0.179
    }
}

impl TryFrom<String> for Color {
    type Error = BrandingError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<Color> for String {
    fn from(c: Color) -> Self {
        c.0
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A URL the page may load: absolute https, or http to a loopback host
/// (a test's server); no credentials, at most [`MAX_URL_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AssetUrl(String);

impl AssetUrl {
    pub fn parse(text: &str) -> Result<Self, BrandingError> {
        let refuse = |why| BrandingError::Url {
            url: text.to_owned(),
            why,
        };
        if text.len() > MAX_URL_BYTES {
            return Err(refuse("longer than 2048 bytes"));
        }
        let url = Url::parse(text).map_err(|_| refuse("not an absolute URL"))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(refuse("it must use https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("it must not carry credentials"));
        }
        // The serialised form: spaces, quotes and brackets percent-encoded
        // (WHATWG URL), what the page writes.
        Ok(Self(url.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AssetUrl {
    type Error = BrandingError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<AssetUrl> for String {
    fn from(u: AssetUrl) -> Self {
        u.0
    }
}

/// Auth0's page background: a colour, or a linear gradient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PageBackground {
    Color(Color),
    Gradient(Gradient),
}

/// Auth0's gradient object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawGradient", into = "RawGradient")]
pub struct Gradient {
    pub start: Color,
    pub end: Color,
    /// Degrees, 0 to 360.
    pub angle_deg: u16,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGradient {
    #[serde(rename = "type")]
    kind: String,
    start: Color,
    end: Color,
    angle_deg: i64,
}

impl TryFrom<RawGradient> for Gradient {
    type Error = BrandingError;
    fn try_from(raw: RawGradient) -> Result<Self, Self::Error> {
        if raw.kind != "linear-gradient" {
            return Err(BrandingError::GradientType(raw.kind));
        }
        let angle_deg = u16::try_from(raw.angle_deg)
            .ok()
            .filter(|a| *a <= 360)
            .ok_or(BrandingError::GradientAngle(raw.angle_deg))?;
        Ok(Self {
            start: raw.start,
            end: raw.end,
            angle_deg,
        })
    }
}

impl From<Gradient> for RawGradient {
    fn from(g: Gradient) -> Self {
        Self {
            kind: "linear-gradient".into(),
            start: g.start,
            end: g.end,
            angle_deg: i64::from(g.angle_deg),
        }
    }
}

/// `colors`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Colors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<Color>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_background: Option<PageBackground>,
}

/// `font`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Font {
    pub url: AssetUrl,
}

/// The body of `GET /api/v2/branding`, and what is stored: every field
/// checked by its type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandingSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colors: Option<Colors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<AssetUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub favicon_url: Option<AssetUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub font: Option<Font>,
}

impl BrandingSettings {
    /// Applies a `PATCH` body as a JSON Merge Patch (RFC 7396 §2: members
    /// replace, `null` removes, objects merge), then checks the result.
    pub fn patched(&self, patch: &serde_json::Value) -> Result<Self, String> {
        let mut merged = serde_json::to_value(self).map_err(|e| e.to_string())?;
        merge_patch(&mut merged, patch);
        serde_json::from_value(merged).map_err(|e| e.to_string())
    }

    pub fn primary(&self) -> Option<&Color> {
        self.colors.as_ref()?.primary.as_ref()
    }

    pub fn page_background(&self) -> Option<&PageBackground> {
        self.colors.as_ref()?.page_background.as_ref()
    }
}

/// RFC 7396 §2 `MergePatch(Target, Patch)`.
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(into) = target {
        for (name, value) in members {
            if value.is_null() {
                into.remove(name);
            } else {
                merge_patch(
                    into.entry(name.clone()).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
    }
}

// ---- the page template ----

/// A Liquid variable Waypass fills (Auth0's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    ApplicationName,
    ApplicationId,
    LogoUrl,
    PrimaryColor,
    Locale,
    PageTitle,
}

const VARIABLES: [(&str, Variable); 6] = [
    ("application.name", Variable::ApplicationName),
    ("application.id", Variable::ApplicationId),
    ("branding.logo_url", Variable::LogoUrl),
    ("branding.colors.primary", Variable::PrimaryColor),
    ("locale", Variable::Locale),
    ("prompt.screen.texts.pageTitle", Variable::PageTitle),
];

/// The variables filled, for error messages.
const VARIABLES_LIST: &str = "application.name, application.id, branding.logo_url, \
    branding.colors.primary, locale and prompt.screen.texts.pageTitle";

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The operator's text, written as it is.
    Text(String),
    Head,
    Widget,
    Variable(Variable),
}

/// A Universal Login page template, parsed: its source (what the API
/// shows) and its parts (what the page renders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageTemplate {
    source: String,
    parts: Vec<Part>,
}

impl PageTemplate {
    /// Parses a template; refused unless it has one `auth0:head` and at
    /// least one `auth0:widget` (Auth0's rule), and no Liquid Waypass does
    /// not fill.
    pub fn parse(source: &str) -> Result<Self, BrandingError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(BrandingError::TemplateTooLarge);
        }
        let mut parts = Vec::new();
        let mut rest = source;
        loop {
            let next = [rest.find("{%"), rest.find("{{")]
                .into_iter()
                .flatten()
                .min();
            let Some(at) = next else {
                if !rest.is_empty() {
                    parts.push(Part::Text(rest.to_owned()));
                }
                break;
            };
            if at > 0 {
                parts.push(Part::Text(rest[..at].to_owned()));
            }
            let tag = rest[at..].starts_with("{%");
            let close = if tag { "%}" } else { "}}" };
            let body_at = at + 2;
            let end = rest[body_at..]
                .find(close)
                .ok_or(BrandingError::TemplateUnclosed(if tag {
                    "{%"
                } else {
                    "{{"
                }))?;
            let raw = &rest[at..body_at + end + 2];
            // `{%-`/`-%}` only trim whitespace around a tag in Liquid.
            let inner = rest[body_at..body_at + end]
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            let part = if tag {
                match inner.split_whitespace().next().unwrap_or_default() {
                    "auth0:head" if inner == "auth0:head" => Some(Part::Head),
                    "auth0:widget" if inner == "auth0:widget" => Some(Part::Widget),
                    // Writes nothing; what it names reads as unknown below.
                    "assign" => None,
                    _ => return Err(BrandingError::TemplateUnsupported(raw.to_owned())),
                }
            } else {
                // A filter (`| default: …`) is not applied: the variable
                // alone is written. An unknown variable writes nothing, as
                // Liquid writes an undefined one.
                let name = inner.split('|').next().unwrap_or_default().trim();
                VARIABLES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| Part::Variable(*v))
            };
            parts.extend(part);
            rest = &rest[body_at + end + 2..];
        }
        let heads = parts.iter().filter(|p| **p == Part::Head).count();
        let widgets = parts.iter().filter(|p| **p == Part::Widget).count();
        if heads != 1 || widgets == 0 {
            return Err(BrandingError::TemplateTags);
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }
}

/// What the login page is branded with, as the catalog serves it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Branding {
    pub settings: BrandingSettings,
    /// The operator's page template; `None`: Waypass's own page.
    pub template: Option<PageTemplate>,
}

impl Branding {
    /// Reads what the store holds (the settings as JSON, the template's
    /// source).
    pub fn from_stored(stored: &crate::store::StoredBranding) -> Result<Self, String> {
        let settings = match &stored.settings {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| format!("the stored settings do not parse: {e}"))?,
            None => BrandingSettings::default(),
        };
        let template = stored
            .universal_login_template
            .as_deref()
            .map(PageTemplate::parse)
            .transpose()
            .map_err(|e| format!("the stored template: {e}"))?;
        Ok(Self { settings, template })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_accepted_only_as_three_or_six_hex_digits() {
        assert_eq!(Color::parse("#0059D6").map(|c| c.0), Ok("#0059d6".into()));
        assert!(Color::parse("#abc").is_ok());
        for bad in [
            "red",
            "#abcd",
            "#ggg",
            "0059d6",
            "#fff;} body{display:none",
            "#fff\"",
            "",
        ] {
            assert_eq!(
                Color::parse(bad),
                Err(BrandingError::Color(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn urls_must_be_https_except_to_a_loopback_host() {
        assert!(AssetUrl::parse("https://cdn.example.com/logo.png").is_ok());
        assert!(AssetUrl::parse("http://127.0.0.1:8080/logo.png").is_ok());
        assert!(AssetUrl::parse("http://localhost/logo.png").is_ok());
        for bad in [
            "http://cdn.example.com/logo.png",
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "/logo.png",
            "https://user:pw@cdn.example.com/logo.png",
        ] {
            assert!(AssetUrl::parse(bad).is_err(), "{bad}");
        }
        let quoted = AssetUrl::parse("https://cdn.example.com/a\"b'c) d.png").expect("url");
        assert!(!quoted.as_str().contains(['"', ' ']), "{}", quoted.as_str());
    }

    #[test]
    fn a_patch_merges_fields_and_null_removes_one() {
        let start: BrandingSettings = serde_json::from_str(
            r##"{"colors":{"primary":"#111111","page_background":"#222222"},"logo_url":"https://a.test/l.png"}"##,
        )
        .expect("settings");
        let patched = start
            .patched(&serde_json::json!({"colors": {"primary": "#333"}, "logo_url": null}))
            .expect("patched");
        assert_eq!(patched.primary().map(Color::as_str), Some("#333"));
        assert_eq!(
            patched.page_background(),
            Some(&PageBackground::Color(Color("#222222".into())))
        );
        assert_eq!(patched.logo_url, None);
        let refused = start.patched(&serde_json::json!({"colors": {"primary": "blue"}}));
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("`blue` is not a colour")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_gradient_background_round_trips_in_auth0s_shape() {
        let json = r##"{"colors":{"page_background":{"type":"linear-gradient","start":"#fff","end":"#000","angle_deg":35}}}"##;
        let settings: BrandingSettings = serde_json::from_str(json).expect("gradient");
        assert_eq!(serde_json::to_string(&settings).expect("json"), json);
        let bad = r##"{"colors":{"page_background":{"type":"radial-gradient","start":"#fff","end":"#000","angle_deg":35}}}"##;
        assert!(serde_json::from_str::<BrandingSettings>(bad).is_err());
    }

    #[test]
    fn a_template_needs_one_head_and_a_widget() {
        let ok = PageTemplate::parse(
            "<html><head>{%- auth0:head -%}<title>{{ application.name }}</title></head>\
             <body>{% auth0:widget %}</body></html>",
        )
        .expect("template");
        assert_eq!(
            ok.parts()[1..4],
            [
                Part::Head,
                Part::Text("<title>".into()),
                Part::Variable(Variable::ApplicationName)
            ]
        );
        for bad in [
            "<html><body>{%- auth0:widget -%}</body></html>",
            "<html><head>{%- auth0:head -%}</head><body></body></html>",
            "{%- auth0:head -%}{%- auth0:head -%}{%- auth0:widget -%}",
        ] {
            assert_eq!(PageTemplate::parse(bad), Err(BrandingError::TemplateTags));
        }
        assert_eq!(
            BrandingError::TemplateTags.to_string(),
            TEMPLATE_TAGS_MESSAGE
        );
    }

    #[test]
    fn a_template_with_liquid_waypass_does_not_fill_is_refused_by_name() {
        let e = PageTemplate::parse(
            "{%- auth0:head -%}{% if prompt.name == 'login' %}x{% endif %}{%- auth0:widget -%}",
        );
        assert_eq!(
            e,
            Err(BrandingError::TemplateUnsupported(
                "{% if prompt.name == 'login' %}".into()
            ))
        );
        assert_eq!(
            PageTemplate::parse("{%- auth0:head -%}{%- auth0:widget -%}{{ oops"),
            Err(BrandingError::TemplateUnclosed("{{"))
        );
    }

    #[test]
    fn auth0s_sample_template_parses_with_its_assign_and_unknown_variables_writing_nothing() {
        // The template Auth0's SDKs document for this endpoint.
        let sample = "<!DOCTYPE html>{% assign resolved_dir = dir | default: \"auto\" %}\
            <html lang=\"{{locale}}\" dir=\"{{resolved_dir}}\"><head>{%- auth0:head -%}</head>\
            <body class=\"_widget-auto-layout\">{%- auth0:widget -%}</body></html>";
        let t = PageTemplate::parse(sample).expect("Auth0's sample");
        assert_eq!(
            t.parts()[..4],
            [
                Part::Text("<!DOCTYPE html>".into()),
                Part::Text("<html lang=\"".into()),
                Part::Variable(Variable::Locale),
                Part::Text("\" dir=\"".into()),
            ]
        );
        assert_eq!(t.source(), sample);
    }
}
