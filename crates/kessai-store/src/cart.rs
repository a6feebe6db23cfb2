//! The cart: per member store, held in a cookie (no JavaScript, no
//! server-side session). It is only a wish list: prices always come from
//! the catalog when the estimate is made.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use kessai_core::ids::StoreId;

use crate::catalog::is_valid_sku;
use crate::limits::{MAX_CART_ITEMS, MAX_CART_QUANTITY};

/// Products and quantities, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cart {
    items: Vec<(String, u32)>,
}

/// The cookie holding `member`'s cart (store ids are cookie-name safe).
pub fn cookie_name(member: &StoreId) -> String {
    format!("kessai_cart_{member}")
}

impl Cart {
    /// Reads the member's cart from the request's cookies; anything
    /// malformed is dropped, never an error.
    pub fn from_headers(headers: &HeaderMap, member: &StoreId) -> Cart {
        let name = cookie_name(member);
        let value = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v);
        let mut cart = Cart::default();
        for item in value.unwrap_or("").split('|') {
            let Some((sku, qty)) = item.split_once(':') else { continue };
            if let Ok(qty) = qty.parse::<u32>() {
                cart.set(sku, qty);
            }
        }
        cart
    }

    /// Sets a product's quantity; 0 removes it. Ignores invalid SKUs,
    /// caps the quantity and the number of products.
    pub fn set(&mut self, sku: &str, quantity: u32) {
        if !is_valid_sku(sku) {
            return;
        }
        let quantity = quantity.min(MAX_CART_QUANTITY);
        match self.items.iter().position(|(s, _)| s == sku) {
            Some(i) if quantity == 0 => {
                self.items.remove(i);
            }
            Some(i) => self.items[i].1 = quantity,
            None if quantity > 0 && self.items.len() < MAX_CART_ITEMS => self.items.push((sku.to_owned(), quantity)),
            None => {}
        }
    }

    pub fn items(&self) -> &[(String, u32)] {
        &self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The `Set-Cookie` value storing this cart (or clearing it).
    pub fn set_cookie(&self, member: &StoreId) -> String {
        let value: Vec<String> = self.items.iter().map(|(sku, qty)| format!("{sku}:{qty}")).collect();
        let max_age = if self.items.is_empty() { "; Max-Age=0" } else { "" };
        format!("{}={}; Path=/; HttpOnly; Secure; SameSite=Lax{max_age}", cookie_name(member), value.join("|"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn round_trips_through_the_cookie_and_drops_junk() {
        let member = StoreId::parse("bookshop").unwrap();
        let mut cart = Cart::default();
        cart.set("a-1", 2);
        cart.set("b.2", 500);
        cart.set("bad sku", 1);
        cart.set("a-1", 3);
        assert_eq!(cart.items(), &[("a-1".to_owned(), 3), ("b.2".to_owned(), MAX_CART_QUANTITY)]);
        let cookie = cart.set_cookie(&member);
        let value = cookie.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&format!("other=1; {value}; x=y")).unwrap());
        assert_eq!(Cart::from_headers(&headers, &member), cart);
        headers.insert(COOKIE, HeaderValue::from_static("kessai_cart_bookshop=a:x|:|b:1|c<:2"));
        assert_eq!(Cart::from_headers(&headers, &member).items(), &[("b".to_owned(), 1)]);
        cart.set("a-1", 0);
        cart.set("b.2", 0);
        assert!(cart.set_cookie(&member).contains("Max-Age=0"));
    }
}
