//! Black-box tests: the real router on a fresh database per test (`db`: on the Postgres
//! server at DATABASE_URL, else a temporary embedded store), driven over HTTP. One test
//! binary, one module per area.
#![allow(clippy::unwrap_used)]

mod agent;
mod auth;
mod cli;
mod connections;
mod db;
// Its trials run on the embedded store.
#[cfg(feature = "embedded")]
mod dbmove;
mod discovery;
mod document_work;
#[cfg(feature = "embedded")]
mod embedded;
mod governance;
mod groups;
mod hangups;
mod hardening;
mod health;
mod helpers;
mod hosts;
mod isolation;
mod limits;
mod load;
mod oauth;
mod openapi;
mod ops;
mod profiles;
mod protocol;
mod queue;
mod quirks;
mod reassign;
mod snapshots;
mod tasks;
mod ticket_fakes;
mod tickets;
mod tokens;
mod users;
mod web;
mod web_roles;
