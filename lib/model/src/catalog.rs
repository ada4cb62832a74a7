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
//! Every command that takes `--config` reads a file through [`load`], so a dataset's own file
//! is a catalog of one.
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

use crate::config::{ConfigError, DatasetConfig};

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
/// environment to every dataset.
pub fn load(path: &Path) -> Result<Vec<DatasetConfig>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    from_toml_with_env(&text, &path.display().to_string(), std::env::vars())
}

/// Reads every file of `paths` (each a dataset's config or a catalog) into one list of
/// datasets; a dataset name or store path given twice, in one file or across them, is refused.
pub fn load_all<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<DatasetConfig>, ConfigError> {
    let mut configs: Vec<DatasetConfig> = Vec::new();
    for path in paths {
        let path = path.as_ref();
        for config in load(path)? {
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
    Ok(configs)
}

/// Parses a dataset's config or a catalog from TOML text, applying the `ROLLER__*` pairs of
/// `env` to every dataset; fails on the first dataset that is not valid, naming it.
pub fn from_toml_with_env(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<DatasetConfig>, ConfigError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let doc: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Parse {
        origin: origin.to_owned(),
        source,
    })?;
    if !is_catalog(&doc) {
        return Ok(vec![DatasetConfig::from_value_with_env(
            toml::Value::Table(doc),
            origin,
            env,
        )?]);
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
    for (index, template) in templates.into_iter().enumerate() {
        datasets.extend(expand_template(template, index, origin)?);
    }
    if datasets.is_empty() {
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
    Ok(configs)
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

/// The datasets a `[[template]]` makes: one per entry of its `parameters`, each the template's
/// keys with `{parameter}` replaced, the entry's own keys laid over them.
fn expand_template(
    template: toml::Value,
    index: usize,
    origin: &str,
) -> Result<Vec<toml::Value>, ConfigError> {
    let refuse = |reason: String| ConfigError::Catalog {
        origin: origin.to_owned(),
        reason: format!("template {index}: {reason}"),
    };
    let toml::Value::Table(mut template) = template else {
        return Err(refuse("is not a table".to_owned()));
    };
    let parameters = match template.remove(PARAMETERS_KEY) {
        Some(toml::Value::Table(parameters)) if !parameters.is_empty() => parameters,
        _ => {
            return Err(refuse(format!(
                "needs `{PARAMETERS_KEY}`, a table from each parameter token to the variable its files hold (`temperature_at_screen_level = \"air_temperature\"`) or to that dataset's own keys"
            )))
        }
    };
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
    Ok(datasets)
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

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Vec<DatasetConfig>, ConfigError> {
        from_toml_with_env(
            text,
            "catalog.toml",
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn each_dataset_is_its_defaults_with_its_own_keys_laid_over() {
        let configs = parse(CATALOG, &[]).expect("valid catalog");
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
        let configs = parse(
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
        let configs = parse(one, &[]).expect("a dataset's own file");
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0], DatasetConfig::from_toml(one).expect("same"));
    }

    #[test]
    fn mistakes_name_the_dataset_and_the_key() {
        let bad = CATALOG.replace("rolling = { window = 4 }", "rolling = { window = 0 }");
        let err = parse(&bad, &[]).expect_err("window 0").to_string();
        assert!(
            err.contains("ukv-rain") && err.contains("rolling.window"),
            "{err}"
        );
        let twice = CATALOG.replace("name = \"ukv-rain\"", "name = \"ukv-temperature\"");
        let err = parse(&twice, &[]).expect_err("a name twice").to_string();
        assert!(err.contains("defined twice"), "{err}");
        let shared = CATALOG.replace("/data/{name}", "/data/all");
        let err = parse(&shared, &[]).expect_err("one store").to_string();
        assert!(err.contains("store path"), "{err}");
        let stray = format!("window = 3\n{CATALOG}");
        let err = parse(&stray, &[]).expect_err("a stray key").to_string();
        assert!(err.contains("unknown top-level key `window`"), "{err}");
        for empty in ["dataset = []\n", "[defaults]\nvariable = \"x\"\n"] {
            let err = parse(empty, &[]).expect_err("no dataset").to_string();
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
        let configs = parse(&text, &[]).expect("valid catalog");
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
        let err = parse(&base, &[]).expect_err("no parameters").to_string();
        assert!(
            err.contains("template 0") && err.contains("parameters"),
            "{err}"
        );
        let fixed = base.replace("ukv-{parameter}", "ukv-fixed")
            + "parameters = { rainfall_rate = \"rainfall_rate\" }\n";
        let err = parse(&fixed, &[]).expect_err("one name").to_string();
        assert!(err.contains("must hold `{parameter}`"), "{err}");
        let number = base.clone() + "parameters = { rainfall_rate = 3 }\n";
        let err = parse(&number, &[]).expect_err("a number").to_string();
        assert!(err.contains("parameter `rainfall_rate`"), "{err}");
    }

    #[test]
    fn a_single_dataset_command_says_a_catalog_is_one() {
        let err = DatasetConfig::from_toml(CATALOG).expect_err("a catalog");
        assert!(err.to_string().contains("catalog of 2 datasets"), "{err}");
    }
}
