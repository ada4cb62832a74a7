//! Catalogs: one TOML file describing many datasets. A catalog has a `[defaults]` table (any
//! dataset key: window, store path, codec, schedule...) and one `[[dataset]]` table per
//! dataset; each dataset is its defaults with its own keys laid over them (tables merge key by
//! key, anything else is replaced), and `{name}` in a default string becomes the dataset's name
//! (`store.path = "/data/{name}"`). Environment overrides (`ROLLER__...`) then apply to every
//! dataset, as they do to a single dataset's file, and each dataset is validated like one.
//!
//! A `[[template]]` makes a dataset per parameter of the feed it lists: its `name` and every
//! string in it may hold `{parameter}` (the key's parameter token, e.g.
//! `temperature_at_screen_level_max-PT01H`), and `parameters` maps each token to the CF
//! variable its files hold, or to a table of that dataset's own keys (`variable` among them).
//! A family of parameters that differ from the defaults in the same way (the 15-minute rate
//! fields, the hourly extremes starting at PT1H, the levels) is one template with its keys.
//!
//! A template whose `parameters` is `"*"` ([`ANY_PARAMETER`]) *discovers*: it makes a dataset
//! for each parameter the feed carries that its `match` takes and no other dataset does, when
//! the first notice of it comes ([`Catalog::discover`]). Its datasets take the variable from
//! their first file unless the template names one ([`crate::config::VARIABLE_FROM_FILE`]),
//! and their file dims too where the catalog leaves them out; `limit` (default
//! [`DEFAULT_DISCOVERY_LIMIT`]) caps how many it makes, so a feed cannot make datasets without
//! end. A parameter token makes a dataset only if it is a plain name
//! ([`valid_parameter`]: letters, digits, `_`, `-`) and the dataset's name is one a NATS subject
//! can hold.
//!
//! Every command that takes `--config` reads a file through [`load`] or [`load_catalog`], so a
//! dataset's own file is a catalog of one.
//!
//! ```toml
//! [defaults]
//! rolling = { dim = "forecast_reference_time", step = "1h", window = 8 }
//! store.path = "/data/{name}"
//!
//! [[dataset]]
//! name = "ukv-temperature"
//! variable = "air_temperature"
//! # match, message_dims, file_dims...
//!
//! [[template]]
//! name = "ukv-{parameter}"
//! match = { model = "uk-deterministic-2km", name = "{parameter}" }
//! parameters = { temperature_at_surface = "surface_temperature", relative_humidity_at_screen_level = "relative_humidity" }
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use roller_proto::Notification;

use crate::config::{ConfigError, DatasetConfig, VARIABLE_FROM_FILE};
use crate::matching::matches;

/// The top-level key of a catalog's datasets.
pub const DATASETS_KEY: &str = "dataset";

/// The top-level key of a catalog's shared defaults.
pub const DEFAULTS_KEY: &str = "defaults";

/// The top-level key of a catalog's templates (a dataset per listed parameter).
pub const TEMPLATES_KEY: &str = "template";

/// The key of a template listing its parameters.
pub const PARAMETERS_KEY: &str = "parameters";

/// The placeholder a template's strings hold for the parameter token.
pub const PARAMETER_PLACEHOLDER: &str = "{parameter}";

/// The `parameters` of a template that makes a dataset for every parameter the feed carries.
pub const ANY_PARAMETER: &str = "*";

/// The key of a discovering template capping how many datasets it makes.
pub const LIMIT_KEY: &str = "limit";

/// How many datasets a discovering template makes at most unless its `limit` says otherwise.
pub const DEFAULT_DISCOVERY_LIMIT: usize = 200;

/// Longest parameter token a discovering template takes (a dataset name, which holds it, is at
/// most 64 characters: a NATS subject token).
pub const MAX_PARAMETER_LEN: usize = 64;

/// A catalog as loaded: its datasets, and its templates that make datasets from the feed.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The datasets it defines (explicit ones and those of templates listing their
    /// parameters).
    pub datasets: Vec<DatasetConfig>,
    /// Its templates with `parameters = "*"`, in the order given.
    pub discovering: Vec<Discovering>,
}

/// A `[[template]]` with `parameters = "*"`: a dataset for each parameter of the feed that its
/// `match` takes.
#[derive(Debug, Clone)]
pub struct Discovering {
    /// The template's keys, `{parameter}` still in them.
    template: toml::Table,
    /// The catalog's defaults.
    defaults: toml::Table,
    /// The `ROLLER__*` overrides.
    env: Vec<(String, String)>,
    /// Where the template was read, and its place among the templates.
    origin: String,
    index: usize,
    /// Most datasets it makes.
    limit: usize,
}

/// A dataset a template made for a notice.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The dataset.
    pub config: DatasetConfig,
    /// The parameter token it was made for.
    pub parameter: String,
    /// Which of the catalog's discovering templates made it.
    pub template: usize,
}

/// Whether `parameter` (a token of the feed) may name a dataset: 1 to [`MAX_PARAMETER_LEN`]
/// letters, digits, `_` or `-`; so it cannot reach outside a store path or a NATS subject token
/// it is put in.
pub fn valid_parameter(parameter: &str) -> bool {
    !parameter.is_empty()
        && parameter.len() <= MAX_PARAMETER_LEN
        && parameter
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
}

impl Discovering {
    /// Most datasets this template makes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The dataset this template makes for `parameter`, validated like any dataset.
    pub fn dataset_for(&self, parameter: &str) -> Result<DatasetConfig, ConfigError> {
        if !valid_parameter(parameter) {
            return Err(ConfigError::Catalog {
                origin: self.origin.clone(),
                reason: format!(
                    "template {}: the parameter `{}` cannot name a dataset (1 to {MAX_PARAMETER_LEN} letters, digits, `_` or `-`)",
                    self.index,
                    parameter.escape_debug()
                ),
            });
        }
        let own = substitute(&self.template, PARAMETER_PLACEHOLDER, parameter);
        let name = own
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut merged = substitute(&self.defaults, "{name}", &name);
        merge(&mut merged, own);
        let config = DatasetConfig::from_value_with_env(
            toml::Value::Table(merged),
            &self.origin,
            self.env.clone(),
        )
        .map_err(|source| ConfigError::InDataset {
            origin: self.origin.clone(),
            index: self.index,
            name: name.clone(),
            source: Box::new(source),
        })?;
        roller_proto::Subjects::check_dataset(&config.name).map_err(|e| ConfigError::Catalog {
            origin: self.origin.clone(),
            reason: format!(
                "template {}: the dataset `{name}` made for parameter `{parameter}` cannot be named so: {e}",
                self.index
            ),
        })?;
        Ok(config)
    }

    /// What identifies this template among the catalogs sharing a NATS prefix: its `name`
    /// pattern and its `match`, as TOML (tables are ordered), so the processes serving one
    /// catalog agree, two catalogs' templates differ, and changing its other keys (a window, a
    /// codec) keeps the router and the commit group.
    pub fn identity(&self) -> String {
        let key: toml::Table = self
            .template
            .iter()
            .filter(|(k, _)| *k == "name" || *k == "match")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        format!("template:{}", toml::to_string(&key).unwrap_or_default())
    }
}

impl Catalog {
    /// The dataset a discovering template makes for `notification`: the first template whose
    /// dataset for the notice's parameter (its `name`) takes it; `None` when none does. Meant
    /// for notices no dataset of the catalog takes.
    pub fn discover(&self, notification: &Notification) -> Option<Result<Discovered, ConfigError>> {
        for (template, discovering) in self.discovering.iter().enumerate() {
            let made = match discovering.dataset_for(&notification.name) {
                Ok(config) => config,
                // A token no dataset may be named after, for a template that would take it.
                Err(e) if discovering.might_take(notification) => return Some(Err(e)),
                Err(_) => continue,
            };
            if matches(&made.matching, notification) {
                return Some(Ok(Discovered {
                    config: made,
                    parameter: notification.name.clone(),
                    template,
                }));
            }
        }
        None
    }

    /// The dataset named `name` that a discovering template of this catalog makes for
    /// `parameter` (as a registry of discovered datasets recorded it); `None` when none makes
    /// that name (another catalog's dataset).
    pub fn rediscover(&self, name: &str, parameter: &str) -> Option<Discovered> {
        self.discovering
            .iter()
            .enumerate()
            .find_map(|(template, discovering)| {
                let config = discovering.dataset_for(parameter).ok()?;
                (config.name == name).then(|| Discovered {
                    config,
                    parameter: parameter.to_owned(),
                    template,
                })
            })
    }

    /// What identifies the set of processes serving this catalog: its datasets' names and its
    /// discovering templates' identities. Hashed, it names the feed's router and the commit
    /// replicas' group, so two catalogs on one NATS prefix never share them.
    pub fn group_names(&self) -> Vec<String> {
        self.datasets
            .iter()
            .map(|c| c.name.clone())
            .chain(self.discovering.iter().map(Discovering::identity))
            .collect()
    }
}

/// The datasets a catalog's discovering templates have made so far, so that each is made once,
/// none takes another's name or store, and a template stops at its `limit`.
#[derive(Debug, Default)]
pub struct Discoveries {
    /// Each dataset made: its name, store path and template.
    made: Vec<(String, std::path::PathBuf, usize)>,
}

impl Discoveries {
    /// How many datasets have been made.
    pub fn len(&self) -> usize {
        self.made.len()
    }

    /// Whether none has been made.
    pub fn is_empty(&self) -> bool {
        self.made.is_empty()
    }

    /// Makes the dataset for `notification`, which no dataset of `catalog` nor any made so far
    /// takes: `Ok(None)` when no discovering template takes it either; an error when the one
    /// that would cannot (a parameter that cannot name a dataset, a name or store taken, its
    /// limit reached).
    pub fn make(
        &mut self,
        catalog: &Catalog,
        notification: &Notification,
    ) -> Result<Option<Discovered>, ConfigError> {
        let Some(discovered) = catalog.discover(notification).transpose()? else {
            return Ok(None);
        };
        self.admit(catalog, &discovered)?;
        Ok(Some(discovered))
    }

    /// Records `discovered` (made here by [`Self::make`] or elsewhere, e.g. read from a
    /// registry), refusing it when its name or store is another dataset's or its template's
    /// limit is reached; `false` when it was recorded already.
    pub fn admit(
        &mut self,
        catalog: &Catalog,
        discovered: &Discovered,
    ) -> Result<bool, ConfigError> {
        let config = &discovered.config;
        if self.made.iter().any(|(name, _, _)| *name == config.name) {
            return Ok(false);
        }
        let refuse = |reason: String| ConfigError::Catalog {
            origin: catalog
                .discovering
                .get(discovered.template)
                .map(|t| t.origin.clone())
                .unwrap_or_default(),
            reason,
        };
        let taken = catalog
            .datasets
            .iter()
            .map(|c| (&c.name, &c.store.path))
            .chain(self.made.iter().map(|(n, p, _)| (n, p)))
            .find(|(name, path)| **name == config.name || **path == config.store.path);
        if let Some((name, _)) = taken {
            return Err(refuse(format!(
                "the dataset `{}` made for parameter `{}` would take the name or store of dataset `{name}`; give the template's datasets their own names and stores",
                config.name, discovered.parameter
            )));
        }
        let limit = catalog
            .discovering
            .get(discovered.template)
            .map_or(0, Discovering::limit);
        let count = self
            .made
            .iter()
            .filter(|(_, _, t)| *t == discovered.template)
            .count();
        if count >= limit {
            return Err(refuse(format!(
                "template {} has made its {limit} datasets (`{LIMIT_KEY}`); parameter `{}` makes none: raise the limit or list the parameters",
                discovered.template, discovered.parameter
            )));
        }
        self.made.push((
            config.name.clone(),
            config.store.path.clone(),
            discovered.template,
        ));
        Ok(true)
    }
}

impl Discovering {
    /// Whether this template's `match.model` takes `notification`'s model: a notice of its
    /// model whose token cannot name a dataset is refused rather than ignored.
    fn might_take(&self, notification: &Notification) -> bool {
        self.template
            .get("match")
            .and_then(|m| m.get("model"))
            .and_then(toml::Value::as_str)
            .is_some_and(|model| model == notification.model)
    }
}

/// Whether parsed TOML is a catalog (it has `[[dataset]]` or `[[template]]` tables or
/// `[defaults]`) rather than one dataset.
pub fn is_catalog(doc: &toml::Table) -> bool {
    [DATASETS_KEY, DEFAULTS_KEY, TEMPLATES_KEY]
        .iter()
        .any(|key| doc.contains_key(*key))
}

/// How many datasets a catalog's TOML defines: its `[[dataset]]` tables and its templates'
/// parameters.
pub fn dataset_count(doc: &toml::Table) -> usize {
    let items = |key: &str| {
        doc.get(key)
            .and_then(toml::Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    };
    let templated: usize = items(TEMPLATES_KEY)
        .iter()
        .filter_map(|t| t.get(PARAMETERS_KEY)?.as_table())
        .map(toml::Table::len)
        .sum();
    items(DATASETS_KEY).len() + templated
}

/// Reads a dataset's config or a catalog, applying `ROLLER__*` overrides from the process
/// environment to every dataset; the datasets it defines (not those its discovering templates
/// would make, see [`load_file`]).
pub fn load(path: &Path) -> Result<Vec<DatasetConfig>, ConfigError> {
    Ok(load_file(path)?.datasets)
}

/// Reads a dataset's config or a catalog, with its discovering templates.
pub fn load_file(path: &Path) -> Result<Catalog, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string(), std::env::vars())
}

/// Reads every file of `paths` (each a dataset's config or a catalog) into one list of
/// datasets; a dataset name or store path given twice, in one file or across them, is refused.
pub fn load_all<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<DatasetConfig>, ConfigError> {
    Ok(load_catalog(paths)?.datasets)
}

/// Reads every file of `paths` into one catalog: every dataset (a name or store path given
/// twice is refused) and every discovering template, in the order given.
pub fn load_catalog<P: AsRef<Path>>(paths: &[P]) -> Result<Catalog, ConfigError> {
    let mut configs: Vec<DatasetConfig> = Vec::new();
    let mut discovering = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let catalog = load_file(path)?;
        discovering.extend(catalog.discovering);
        for config in catalog.datasets {
            let clash = configs
                .iter()
                .find(|c| c.name == config.name || c.store.path == config.store.path);
            if let Some(earlier) = clash {
                let what = if earlier.name == config.name {
                    format!("dataset `{}` is configured twice", config.name)
                } else {
                    format!(
                        "datasets `{}` and `{}` share the store path {}",
                        earlier.name,
                        config.name,
                        config.store.path.display()
                    )
                };
                return Err(ConfigError::Catalog {
                    origin: path.display().to_string(),
                    reason: format!("{what}; give each dataset its own name and store"),
                });
            }
            configs.push(config);
        }
    }
    Ok(Catalog {
        datasets: configs,
        discovering,
    })
}

/// Parses a dataset's config or a catalog from TOML text, applying the `ROLLER__*` pairs of
/// `env` to every dataset; fails on the first dataset that is not valid, naming it. Returns the
/// datasets it defines (see [`parse`] for its discovering templates too).
pub fn from_toml_with_env(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<DatasetConfig>, ConfigError> {
    Ok(parse(text, origin, env)?.datasets)
}

/// Parses a dataset's config or a catalog, with its discovering templates, from TOML text
/// (see [`from_toml_with_env`]). A discovering template is checked by making its dataset for a
/// sample parameter, so its mistakes show at load.
pub fn parse(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Catalog, ConfigError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let doc: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Parse {
        origin: origin.to_owned(),
        source,
    })?;
    if !is_catalog(&doc) {
        return Ok(Catalog {
            datasets: vec![DatasetConfig::from_value_with_env(
                toml::Value::Table(doc),
                origin,
                env,
            )?],
            discovering: Vec::new(),
        });
    }
    let mut defaults = toml::Table::new();
    let mut datasets = Vec::new();
    let mut templates = Vec::new();
    for (key, value) in doc {
        match (key.as_str(), value) {
            (DEFAULTS_KEY, toml::Value::Table(table)) => defaults = table,
            (DATASETS_KEY, toml::Value::Array(items)) => datasets = items,
            (TEMPLATES_KEY, toml::Value::Array(items)) => templates = items,
            (DEFAULTS_KEY | DATASETS_KEY | TEMPLATES_KEY, _) => {
                return Err(ConfigError::Catalog {
                    origin: origin.to_owned(),
                    reason: format!(
                        "`{key}` must be a table (`[{DEFAULTS_KEY}]`) or an array of tables (`[[{DATASETS_KEY}]]`, `[[{TEMPLATES_KEY}]]`)"
                    ),
                })
            }
            (other, _) => {
                return Err(ConfigError::Catalog {
                    origin: origin.to_owned(),
                    reason: format!(
                        "unknown top-level key `{other}`; a catalog has only `[{DEFAULTS_KEY}]`, `[[{DATASETS_KEY}]]` and `[[{TEMPLATES_KEY}]]` (dataset keys go inside them)"
                    ),
                })
            }
        }
    }
    let mut discovering = Vec::new();
    for (index, template) in templates.into_iter().enumerate() {
        match expand_template(template, index, origin)? {
            Expanded::Listed(listed) => datasets.extend(listed),
            Expanded::Discovering(template, limit) => {
                let template = Discovering {
                    template,
                    defaults: defaults.clone(),
                    env: env.clone(),
                    origin: origin.to_owned(),
                    index,
                    limit,
                };
                template.dataset_for("sample_parameter")?;
                discovering.push(template);
            }
        }
    }
    if datasets.is_empty() && discovering.is_empty() {
        return Err(ConfigError::Catalog {
            origin: origin.to_owned(),
            reason: format!(
                "it defines no dataset; add a `[[{DATASETS_KEY}]]` or a `[[{TEMPLATES_KEY}]]` table"
            ),
        });
    }
    let mut configs = Vec::with_capacity(datasets.len());
    let mut names = BTreeSet::new();
    let mut stores = BTreeSet::new();
    for (index, item) in datasets.into_iter().enumerate() {
        let toml::Value::Table(own) = item else {
            return Err(ConfigError::Catalog {
                origin: origin.to_owned(),
                reason: format!("dataset {index} is not a table"),
            });
        };
        let name = own
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut merged = substitute(&defaults, "{name}", &name);
        merge(&mut merged, own);
        let config =
            DatasetConfig::from_value_with_env(toml::Value::Table(merged), origin, env.clone())
                .map_err(|source| ConfigError::InDataset {
                    origin: origin.to_owned(),
                    index,
                    name: name.clone(),
                    source: Box::new(source),
                })?;
        if !names.insert(config.name.clone()) {
            return Err(ConfigError::Catalog {
                origin: origin.to_owned(),
                reason: format!("dataset `{}` is defined twice", config.name),
            });
        }
        if !stores.insert(config.store.path.clone()) {
            return Err(ConfigError::Catalog {
                origin: origin.to_owned(),
                reason: format!(
                    "dataset `{}` has the store path {} of an earlier dataset; give each its own (e.g. `store.path = \"/data/{{name}}\"` in the defaults)",
                    config.name,
                    config.store.path.display()
                ),
            });
        }
        configs.push(config);
    }
    Ok(Catalog {
        datasets: configs,
        discovering,
    })
}

/// Lays `over` onto `base`: tables merge key by key, any other value replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => merge(inner, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// What a `[[template]]` is.
enum Expanded {
    /// The datasets of its listed parameters.
    Listed(Vec<toml::Value>),
    /// It discovers (`parameters = "*"`): its keys, and its limit.
    Discovering(toml::Table, usize),
}

/// The datasets a `[[template]]` makes: one per entry of its `parameters`, each the template's
/// keys with `{parameter}` replaced, the entry's own keys laid over them; or, for
/// `parameters = "*"`, the template to make them from the feed.
fn expand_template(
    template: toml::Value,
    index: usize,
    origin: &str,
) -> Result<Expanded, ConfigError> {
    let refuse = |reason: String| ConfigError::Catalog {
        origin: origin.to_owned(),
        reason: format!("template {index}: {reason}"),
    };
    let toml::Value::Table(mut template) = template else {
        return Err(refuse("is not a table".to_owned()));
    };
    let parameters = template.remove(PARAMETERS_KEY);
    let limit = template.remove(LIMIT_KEY);
    let name = template
        .get("name")
        .and_then(toml::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !name.contains(PARAMETER_PLACEHOLDER) {
        return Err(refuse(format!(
            "its `name` (`{name}`) must hold `{PARAMETER_PLACEHOLDER}`, so each parameter's dataset has its own name"
        )));
    }
    let parameters = match (parameters, limit) {
        (Some(toml::Value::String(any)), limit) if any == ANY_PARAMETER => {
            return discovering(template, limit).map_err(refuse);
        }
        (_, Some(_)) => {
            return Err(refuse(format!(
                "`{LIMIT_KEY}` is for templates with `{PARAMETERS_KEY} = \"{ANY_PARAMETER}\"`"
            )))
        }
        (Some(toml::Value::Table(parameters)), None) if !parameters.is_empty() => parameters,
        _ => {
            return Err(refuse(format!(
                "needs `{PARAMETERS_KEY}`: a table from each parameter token to the variable its files hold (`temperature_at_screen_level = \"air_temperature\"`) or to that dataset's own keys, or `\"{ANY_PARAMETER}\"` for a dataset per parameter the feed carries"
            )))
        }
    };
    let mut datasets = Vec::with_capacity(parameters.len());
    for (parameter, own) in parameters {
        let mut dataset = substitute(&template, PARAMETER_PLACEHOLDER, &parameter);
        match own {
            toml::Value::String(variable) => {
                dataset.insert("variable".to_owned(), toml::Value::String(variable));
            }
            toml::Value::Table(own) => merge(
                &mut dataset,
                substitute(&own, PARAMETER_PLACEHOLDER, &parameter),
            ),
            _ => {
                return Err(refuse(format!(
                    "parameter `{parameter}` must map to its variable's name or to a table of its own keys"
                )))
            }
        }
        datasets.push(toml::Value::Table(dataset));
    }
    Ok(Expanded::Listed(datasets))
}

/// A discovering template's keys and limit: its `match.name` must be `{parameter}` (the
/// notice's name is the parameter), and without a `variable` its datasets take their first
/// file's.
fn discovering(mut template: toml::Table, limit: Option<toml::Value>) -> Result<Expanded, String> {
    let name_rule = template
        .get("match")
        .and_then(|m| m.get("name"))
        .and_then(toml::Value::as_str);
    if name_rule != Some(PARAMETER_PLACEHOLDER) {
        return Err(format!(
            "with `{PARAMETERS_KEY} = \"{ANY_PARAMETER}\"`, `match.name` must be `\"{PARAMETER_PLACEHOLDER}\"`: the notice's name is the parameter it makes a dataset for"
        ));
    }
    let limit = match limit {
        None => DEFAULT_DISCOVERY_LIMIT,
        Some(toml::Value::Integer(n)) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(other) => {
            return Err(format!(
                "`{LIMIT_KEY}` must be a whole number above 0, not {other}"
            ))
        }
    };
    template
        .entry("variable")
        .or_insert_with(|| toml::Value::String(VARIABLE_FROM_FILE.to_owned()));
    Ok(Expanded::Discovering(template, limit))
}

/// A copy of `table` with `placeholder` in every string replaced by `value`.
fn substitute(table: &toml::Table, placeholder: &str, value: &str) -> toml::Table {
    fn walk(item: &toml::Value, placeholder: &str, value: &str) -> toml::Value {
        match item {
            toml::Value::String(text) => toml::Value::String(text.replace(placeholder, value)),
            toml::Value::Array(items) => {
                toml::Value::Array(items.iter().map(|v| walk(v, placeholder, value)).collect())
            }
            toml::Value::Table(table) => toml::Value::Table(substitute(table, placeholder, value)),
            other => other.clone(),
        }
    }
    table
        .iter()
        .map(|(k, v)| (k.clone(), walk(v, placeholder, value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = r#"
        [defaults]
        variable = "air_temperature"
        rolling = { dim = "forecast_reference_time", step = "1h", window = 8 }
        store.path = "/data/{name}"
        encoding = { codec = "zstd", level = 3 }
        [[defaults.message_dims]]
        name = "forecast_period"
        step = "1h"
        size = 4
        [[defaults.file_dims]]
        name = "projection_y_coordinate"
        size = 970
        chunk = 485
        [[defaults.file_dims]]
        name = "projection_x_coordinate"
        size = 1042
        chunk = 521

        [[dataset]]
        name = "ukv-temperature"
        match = { model = "uk-deterministic-2km", name = "temperature_at_screen_level" }

        [[dataset]]
        name = "ukv-rain"
        variable = "rainfall_rate"
        match = { model = "uk-deterministic-2km", name = "rainfall_rate" }
        rolling = { window = 4 }
        encoding = { level = 1 }
    "#;

    fn datasets_of(text: &str, env: &[(&str, &str)]) -> Result<Vec<DatasetConfig>, ConfigError> {
        from_toml_with_env(
            text,
            "catalog.toml",
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn each_dataset_is_its_defaults_with_its_own_keys_laid_over() {
        let configs = datasets_of(CATALOG, &[]).expect("valid catalog");
        let [temperature, rain] = &configs[..] else {
            panic!("two datasets, not {}", configs.len())
        };
        assert_eq!(temperature.name, "ukv-temperature");
        assert_eq!(temperature.variable, "air_temperature");
        assert_eq!(temperature.rolling.window, 8);
        assert_eq!(temperature.level(), 3);
        assert_eq!(
            temperature.store.path,
            std::path::PathBuf::from("/data/ukv-temperature")
        );
        assert_eq!(rain.variable, "rainfall_rate");
        // Tables merge key by key: the window changes, the step and dim stay.
        assert_eq!(rain.rolling.window, 4);
        assert_eq!(rain.rolling.step.0, 3600);
        assert_eq!(rain.level(), 1);
        assert_eq!(rain.store.path, std::path::PathBuf::from("/data/ukv-rain"));
        assert_eq!(rain.file_dims.len(), 2);
    }

    #[test]
    fn environment_overrides_apply_to_every_dataset() {
        let configs = datasets_of(
            CATALOG,
            &[
                ("ROLLER__ROLLING__WINDOW", "48"),
                ("ROLLER__STORE__PATH", "s3://zarr-roller/{name}"),
            ],
        )
        .expect("valid");
        assert!(configs.iter().all(|c| c.rolling.window == 48));
        let stores: Vec<String> = configs
            .iter()
            .map(|c| c.store.path.display().to_string())
            .collect();
        assert_eq!(
            stores,
            [
                "s3://zarr-roller/ukv-temperature",
                "s3://zarr-roller/ukv-rain"
            ]
        );
    }

    #[test]
    fn several_files_are_one_list_with_each_name_and_store_once() {
        let dir = std::env::temp_dir().join(format!("roller-load-all-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let catalog = dir.join("catalog.toml");
        std::fs::write(&catalog, CATALOG).expect("write");
        let one = dir.join("one.toml");
        std::fs::write(&one, crate::config::tests::UKV).expect("write");
        let all = load_all(&[&catalog, &one]).expect("three datasets");
        assert_eq!(all.len(), 3);
        let err = load_all(&[&catalog, &catalog])
            .expect_err("twice")
            .to_string();
        assert!(
            err.contains("`ukv-temperature` is configured twice"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dataset_file_is_a_catalog_of_one() {
        let one = crate::config::tests::UKV;
        let configs = datasets_of(one, &[]).expect("a dataset's own file");
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0], DatasetConfig::from_toml(one).expect("same"));
    }

    #[test]
    fn mistakes_name_the_dataset_and_the_key() {
        let bad = CATALOG.replace("rolling = { window = 4 }", "rolling = { window = 0 }");
        let err = datasets_of(&bad, &[]).expect_err("window 0").to_string();
        assert!(
            err.contains("ukv-rain") && err.contains("rolling.window"),
            "{err}"
        );
        let twice = CATALOG.replace("name = \"ukv-rain\"", "name = \"ukv-temperature\"");
        let err = datasets_of(&twice, &[])
            .expect_err("a name twice")
            .to_string();
        assert!(err.contains("defined twice"), "{err}");
        let shared = CATALOG.replace("/data/{name}", "/data/all");
        let err = datasets_of(&shared, &[])
            .expect_err("one store")
            .to_string();
        assert!(err.contains("store path"), "{err}");
        let stray = format!("window = 3\n{CATALOG}");
        let err = datasets_of(&stray, &[])
            .expect_err("a stray key")
            .to_string();
        assert!(err.contains("unknown top-level key `window`"), "{err}");
        for empty in ["dataset = []\n", "[defaults]\nvariable = \"x\"\n"] {
            let err = datasets_of(empty, &[]).expect_err("no dataset").to_string();
            assert!(err.contains("no dataset"), "{empty}: {err}");
        }
    }

    #[test]
    fn a_template_makes_a_dataset_per_parameter_with_its_own_keys() {
        let text = format!(
            r#"{CATALOG}
            [[template]]
            name = "ukv-{{parameter}}"
            match = {{ model = "uk-deterministic-2km", name = "{{parameter}}" }}
            rolling = {{ window = 6 }}
            [template.parameters]
            temperature_at_surface = "surface_temperature"
            "temperature_at_screen_level_max-PT01H" = {{ variable = "air_temperature", rolling = {{ window = 2 }}, store = {{ path = "/max/{{parameter}}" }} }}
            "#
        );
        let configs = datasets_of(&text, &[]).expect("valid catalog");
        let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ukv-temperature",
                "ukv-rain",
                "ukv-temperature_at_screen_level_max-PT01H",
                "ukv-temperature_at_surface"
            ]
        );
        let surface = &configs[3];
        assert_eq!(surface.variable, "surface_temperature");
        assert_eq!(surface.matching.name, "temperature_at_surface");
        assert_eq!(surface.rolling.window, 6);
        assert_eq!(surface.rolling.step.0, 3600, "the defaults lie beneath");
        assert_eq!(
            surface.store.path,
            std::path::PathBuf::from("/data/ukv-temperature_at_surface")
        );
        let max = &configs[2];
        assert_eq!(
            (max.variable.as_str(), max.rolling.window),
            ("air_temperature", 2)
        );
        let whole = format!("{text}\n");
        let doc: toml::Table = toml::from_str(&whole).expect("toml");
        assert_eq!(dataset_count(&doc), 4);
    }

    #[test]
    fn template_mistakes_say_what_a_template_needs() {
        let base = format!("{CATALOG}\n[[template]]\nname = \"ukv-{{parameter}}\"\n");
        let err = datasets_of(&base, &[])
            .expect_err("no parameters")
            .to_string();
        assert!(
            err.contains("template 0") && err.contains("parameters"),
            "{err}"
        );
        let fixed = base.replace("ukv-{parameter}", "ukv-fixed")
            + "parameters = { rainfall_rate = \"rainfall_rate\" }\n";
        let err = datasets_of(&fixed, &[]).expect_err("one name").to_string();
        assert!(err.contains("must hold `{parameter}`"), "{err}");
        let number = base.clone() + "parameters = { rainfall_rate = 3 }\n";
        let err = datasets_of(&number, &[]).expect_err("a number").to_string();
        assert!(err.contains("parameter `rainfall_rate`"), "{err}");
    }

    #[test]
    fn a_single_dataset_command_says_a_catalog_is_one() {
        let err = DatasetConfig::from_toml(CATALOG).expect_err("a catalog");
        assert!(err.to_string().contains("catalog of 2 datasets"), "{err}");
    }

    const DISCOVERING: &str = r#"
        [defaults]
        rolling = { dim = "forecast_reference_time", step = "1h", window = 8 }
        store.path = "/data/{name}"
        [[defaults.message_dims]]
        name = "forecast_period"
        step = "1h"
        size = 4

        [[dataset]]
        name = "ukv-temperature"
        variable = "air_temperature"
        match = { model = "uk-deterministic-2km", name = "temperature_at_screen_level" }

        [[template]]
        name = "ukv-{parameter}"
        match = { model = "uk-deterministic-2km", name = "{parameter}" }
        parameters = "*"
        limit = 2
    "#;

    fn notice(model: &str, name: &str) -> Notification {
        Notification::from_json(&format!(
            r#"{{"model":"{model}","name":"{name}","key":"k","forecast_reference_time":"2024-01-01T00:00:00Z"}}"#
        ))
        .expect("valid")
    }

    #[test]
    fn a_discovering_template_makes_a_dataset_per_parameter_up_to_its_limit() {
        let catalog = parse_catalog(DISCOVERING);
        assert_eq!(catalog.datasets.len(), 1);
        assert_eq!(catalog.discovering.len(), 1);
        let mut made = Discoveries::default();
        let rain = made
            .make(&catalog, &notice("uk-deterministic-2km", "rainfall_rate"))
            .expect("made")
            .expect("a template takes it");
        assert_eq!(rain.config.name, "ukv-rainfall_rate");
        assert_eq!(rain.config.store.path, Path::new("/data/ukv-rainfall_rate"));
        assert_eq!(
            rain.config.variable, VARIABLE_FROM_FILE,
            "left to the first file"
        );
        assert!(rain.config.file_dims.is_empty());
        assert_eq!(rain.parameter, "rainfall_rate");
        // Made again (another replica, the registry) is no change.
        assert!(!made.admit(&catalog, &rain).expect("the same dataset again"));
        assert_eq!(made.len(), 1);
        // Another model: no template takes it.
        assert!(made
            .make(&catalog, &notice("uk-ensemble-2km", "rainfall_rate"))
            .expect("no error")
            .is_none());
        // The registry gives the same dataset back by name and parameter.
        let again = catalog
            .rediscover("ukv-rainfall_rate", "rainfall_rate")
            .expect("rediscovered");
        assert_eq!(again.config, rain.config);
        assert!(catalog.rediscover("ukv-other", "rainfall_rate").is_none());
        // The router's and the commit group's names change with the template.
        let names = catalog.group_names();
        assert_eq!(names[0], "ukv-temperature");
        assert!(names[1].starts_with("template:"), "{names:?}");
        let other = parse_catalog(&DISCOVERING.replace("ukv-{parameter}", "mo-{parameter}"));
        assert_ne!(other.group_names(), names);
        let tuned =
            parse_catalog(&DISCOVERING.replace("limit = 2", "limit = 2\nrolling = { window = 4 }"));
        assert_eq!(tuned.group_names(), names, "other keys keep the names");
        made.make(&catalog, &notice("uk-deterministic-2km", "snow"))
            .expect("the second")
            .expect("made");
        let err = made
            .make(&catalog, &notice("uk-deterministic-2km", "hail"))
            .expect_err("the limit")
            .to_string();
        assert!(
            err.contains("made its 2 datasets") && err.contains("`hail`"),
            "{err}"
        );
    }

    #[test]
    fn a_parameter_that_cannot_name_a_dataset_is_refused() {
        let catalog = parse_catalog(DISCOVERING);
        let mut made = Discoveries::default();
        for bad in [
            "../escape",
            ".hidden",
            "a.b",
            "a/b",
            "sp ace",
            &"x".repeat(65),
        ] {
            let err = made
                .make(&catalog, &notice("uk-deterministic-2km", bad))
                .expect_err(bad)
                .to_string();
            assert!(err.contains("cannot name a dataset"), "{bad}: {err}");
        }
        assert!(made.is_empty());
        // A token that fits but makes a name too long for a subject.
        let err = made
            .make(&catalog, &notice("uk-deterministic-2km", &"x".repeat(62)))
            .expect_err("a long name")
            .to_string();
        assert!(err.contains("longer than 64"), "{err}");
        // A name a listed dataset has is not made twice.
        let text = DISCOVERING
            .replace("ukv-{parameter}", "ukv-{parameter}-x")
            .replace("name = \"ukv-temperature\"", "name = \"ukv-rain-x\"");
        let catalog = parse_catalog(&text);
        let err = made
            .make(&catalog, &notice("uk-deterministic-2km", "rain"))
            .expect_err("a taken name")
            .to_string();
        assert!(
            err.contains("would take the name or store of dataset `ukv-rain-x`"),
            "{err}"
        );
    }

    #[test]
    fn discovering_template_mistakes_are_refused_at_load() {
        let refused = |text: String, expect: &str| {
            let err = datasets_of(&text, &[]).expect_err(expect).to_string();
            assert!(err.contains(expect), "{err}");
        };
        refused(
            DISCOVERING.replace("name = \"{parameter}\"", "name = \"rain\""),
            "`match.name` must be",
        );
        refused(
            DISCOVERING.replace("limit = 2", "limit = 0"),
            "`limit` must be",
        );
        refused(
            CATALOG.replace("[[dataset]]\n        name = \"ukv-rain\"", "[[template]]\n        limit = 3\n        parameters = { rain = \"r\" }\n        name = \"ukv-{parameter}\""),
            "`limit` is for templates",
        );
    }

    fn parse_catalog(text: &str) -> Catalog {
        super::parse(text, "catalog.toml", std::iter::empty()).expect("a catalog")
    }
}
