//! childguard: finds children's personal information in databases, object
//! stores, files and logs; checks each finding against the operator's
//! purpose inventory; and deletes or anonymizes what is kept past its
//! retention period (CAC Order No. 4, MIIT Order No. 24).
//!
//! Stages, one folder each: [`source`] → [`detect`] → [`scan`] (searchers) →
//! [`classify`] → [`store`] → [`report`] / [`daemon`]; [`sweep`] executes
//! retention; [`audit`] records every operation.

pub mod audit;
pub mod classify;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod daemon;
pub mod demo;
pub mod detect;
pub mod finding;
pub mod fingerprint;
pub mod output;
pub mod report;
pub mod scan;
pub mod source;
pub mod store;
pub mod sweep;

pub use finding::{Category, Finding, Location, Sensitivity};
