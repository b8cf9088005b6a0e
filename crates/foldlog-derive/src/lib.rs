//! `#[derive(DomainEvent)]` for foldlog's event enums: writes `event_type` from the variant names and
//! `SCHEMA_VERSION` from an attribute, so an event type is declared once.
//!
//! ```ignore
//! #[derive(foldlog_derive::DomainEvent)]
//! #[domain_event(schema_version = 2, upcast = upcast_account)]
//! enum AccountEvent {
//!     Opened { owner: String },                // event type "Opened"
//!     #[domain_event(rename = "MoneyIn")]
//!     Deposited { cents: u64 },                // event type "MoneyIn"
//! }
//! ```
//!
//! - `schema_version = N` (default 1) becomes `DomainEvent::SCHEMA_VERSION`.
//! - `upcast = path` makes `DomainEvent::upcast` call `path(&EventRef) -> Result<Self, CodecError>`; without it
//!   the trait's default refuses old events. For a chain of versions, `path` can call `foldlog::Upcaster::upcast`
//!   on a chain built once in a `static`.
//! - `rename = "..."` on a variant stores another type name for it (the name is part of the log: renaming a
//!   variant in code must not rename its stored events).
//!
//! The generated impl names `::foldlog::DomainEvent`, so the crate using it depends on `foldlog` directly. The
//! macro is its own crate (not a feature of `foldlog`) so that the library's package needs no proc-macro
//! dependency to build.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Error, Expr, Lit, LitStr, Meta, Path};

/// Derives `foldlog::DomainEvent` for an enum; see the crate documentation.
#[proc_macro_derive(DomainEvent, attributes(domain_event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input).unwrap_or_else(Error::into_compile_error).into()
}

/// What the enum's own `#[domain_event(...)]` says.
struct EnumOptions {
    schema_version: u32,
    upcast: Option<Path>,
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let Data::Enum(data) = &input.data else {
        return Err(Error::new_spanned(
            &input.ident,
            "#[derive(DomainEvent)] works on enums: one variant per event type",
        ));
    };
    let options = enum_options(input)?;
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut arms = Vec::with_capacity(data.variants.len());
    for variant in &data.variants {
        let ident = &variant.ident;
        let stored = variant_name(variant)?.unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()));
        arms.push(quote! { Self::#ident { .. } => #stored, });
    }
    let schema_version = options.schema_version;
    let upcast = options.upcast.map(|path| {
        quote! {
            fn upcast(stored: &::foldlog::EventRef<'_>) -> ::core::result::Result<Self, ::foldlog::CodecError> {
                #path(stored)
            }
        }
    });
    Ok(quote! {
        impl #impl_generics ::foldlog::DomainEvent for #name #ty_generics #where_clause {
            const SCHEMA_VERSION: u32 = #schema_version;
            fn event_type(&self) -> &'static str {
                match self { #(#arms)* }
            }
            #upcast
        }
    })
}

fn enum_options(input: &DeriveInput) -> syn::Result<EnumOptions> {
    let mut options = EnumOptions { schema_version: 1, upcast: None };
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("domain_event")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("schema_version") {
                let Expr::Lit(lit) = meta.value()?.parse::<Expr>()? else {
                    return Err(meta.error("schema_version takes an integer"));
                };
                let Lit::Int(n) = lit.lit else { return Err(meta.error("schema_version takes an integer")) };
                options.schema_version = n.base10_parse()?;
                Ok(())
            } else if meta.path.is_ident("upcast") {
                options.upcast = Some(meta.value()?.parse::<Path>()?);
                Ok(())
            } else {
                Err(meta.error("expected `schema_version = N` or `upcast = path::to::function`"))
            }
        })?;
    }
    if options.schema_version == 0 {
        return Err(Error::new(Span::call_site(), "schema versions start at 1"));
    }
    Ok(options)
}

fn variant_name(variant: &syn::Variant) -> syn::Result<Option<LitStr>> {
    let mut name = None;
    for attr in variant.attrs.iter().filter(|a| a.path().is_ident("domain_event")) {
        if let Meta::List(_) = &attr.meta {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    name = Some(meta.value()?.parse::<LitStr>()?);
                    Ok(())
                } else {
                    Err(meta.error("expected `rename = \"TypeName\"`"))
                }
            })?;
        }
    }
    Ok(name)
}
