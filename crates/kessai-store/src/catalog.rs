//! The catalog: products of the member stores, from a TOML file.
//!
//! ```toml
//! [[products]]
//! member = "bookshop"          # the member store selling it
//! sku = "ebook-rust-001"       # [A-Za-z0-9._-], 1-64
//! name = "Rust in Kessai (e-book)"
//! description = "A short e-book."
//! price_minor = 1200           # integer minor units
//! currency = "JPY"
//! content = "content/rust.txt" # a file delivered by download, relative to the catalog's directory
//! # physical = true            # instead of content: shipped goods
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use kessai_core::ids::StoreId;
use kessai_core::messages::DisplayText;
use kessai_core::{Currency, Money};
use serde::Deserialize;

use crate::config::StoreConfig;
use crate::limits::{MAX_CONFIG_BYTES, MAX_CONTENT_BYTES, MAX_DESCRIPTION_BYTES, MAX_PRODUCTS};

/// How a product reaches the buyer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A file, downloaded after payment.
    Download { path: PathBuf, file_name: String, content_type: &'static str },
    /// Shipped goods.
    Physical,
}

/// A product as sold; valid if it exists.
#[derive(Debug, Clone)]
pub struct Product {
    pub member: StoreId,
    pub sku: String,
    pub name: DisplayText,
    pub description: String,
    pub price: Money,
    pub delivery: Delivery,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    products: Vec<ProductEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductEntry {
    member: StoreId,
    sku: String,
    name: DisplayText,
    #[serde(default)]
    description: String,
    price_minor: u64,
    currency: String,
    #[serde(default)]
    content: Option<PathBuf>,
    #[serde(default)]
    physical: bool,
}

/// All products of the mall, in file order.
#[derive(Debug, Clone)]
pub struct Catalog {
    products: Vec<Product>,
}

/// Whether a SKU is safe in URLs and on bills.
pub fn is_valid_sku(sku: &str) -> bool {
    !sku.is_empty()
        && sku.len() <= 64
        && sku.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("txt") => "text/plain; charset=utf-8",
        Some("pdf") => "application/pdf",
        Some("mp3") => "audio/mpeg",
        Some("wav") => "audio/wav",
        Some("epub") => "application/epub+zip",
        _ => "application/octet-stream",
    }
}

impl Catalog {
    /// Reads and checks the catalog for `config`'s members.
    pub fn load(path: &Path, config: &StoreConfig) -> anyhow::Result<Catalog> {
        let size = std::fs::metadata(path).with_context(|| format!("reading catalog {}", path.display()))?.len();
        ensure!(size <= MAX_CONFIG_BYTES, "catalog {} is too large", path.display());
        let text = std::fs::read_to_string(path).with_context(|| format!("reading catalog {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Catalog::parse(&text, base, config).with_context(|| format!("in catalog {}", path.display()))
    }

    /// Parses catalog TOML; content paths are relative to `base`.
    pub fn parse(text: &str, base: &Path, config: &StoreConfig) -> anyhow::Result<Catalog> {
        let file: CatalogFile = toml::from_str(text)?;
        ensure!(
            !file.products.is_empty() && file.products.len() <= MAX_PRODUCTS,
            "a catalog has 1 to {MAX_PRODUCTS} products"
        );
        let mut seen = HashSet::new();
        let mut products = Vec::with_capacity(file.products.len());
        for entry in file.products {
            ensure!(
                config.member(entry.member.as_str()).is_some(),
                "product {}: unknown member {}",
                entry.sku,
                entry.member
            );
            ensure!(is_valid_sku(&entry.sku), "sku {:?} must be 1-64 of [A-Za-z0-9._-]", entry.sku);
            ensure!(seen.insert(entry.sku.clone()), "sku {} appears twice", entry.sku);
            products.push(product(entry, base)?);
        }
        Ok(Catalog { products })
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    pub fn of_member<'a>(&'a self, member: &'a StoreId) -> impl Iterator<Item = &'a Product> + 'a {
        self.products.iter().filter(move |p| &p.member == member)
    }

    /// The product `sku` of `member` (a member never sells another's).
    pub fn find(&self, member: &StoreId, sku: &str) -> Option<&Product> {
        self.products.iter().find(|p| &p.member == member && p.sku == sku)
    }
}

fn product(entry: ProductEntry, base: &Path) -> anyhow::Result<Product> {
    let sku = entry.sku;
    ensure!(entry.description.len() <= MAX_DESCRIPTION_BYTES, "product {sku}: description too long");
    let currency = Currency::parse(&entry.currency).with_context(|| format!("product {sku}"))?;
    let price = Money::new(entry.price_minor, currency).with_context(|| format!("product {sku}"))?;
    ensure!(!price.is_zero(), "product {sku}: price must be positive");
    let delivery = match (entry.content, entry.physical) {
        (Some(content), false) => {
            let path = if content.is_absolute() { content } else { base.join(content) };
            let meta =
                std::fs::metadata(&path).with_context(|| format!("product {sku}: content {}", path.display()))?;
            ensure!(
                meta.is_file() && meta.len() <= MAX_CONTENT_BYTES,
                "product {sku}: content must be a file of at most {MAX_CONTENT_BYTES} bytes"
            );
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
                .with_context(|| format!("product {sku}: content file name must be plain ASCII"))?
                .to_owned();
            Delivery::Download { content_type: content_type(&path), path, file_name }
        }
        (None, true) => Delivery::Physical,
        _ => bail!("product {sku}: give either content = \"FILE\" or physical = true"),
    };
    Ok(Product { member: entry.member, sku, name: entry.name, description: entry.description, price, delivery })
}
