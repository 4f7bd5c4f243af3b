//! The integration tests, one module per area, built as one binary (one
//! link instead of one per file). `support` starts real redis-servers,
//! clusters, the service (in process or as a process) and the simulator.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod api_collect;
mod api_oa_subscribe;
mod api_push;
mod api_reports;
mod api_send;
mod api_subscribe;
mod api_templates;
mod apps;
mod clock_skew;
mod cluster_failover;
mod embedded_store;
mod grants_contract;
mod grants_props;
mod hardening;
mod ledger_contract;
mod ledger_props;
mod ledger_redis;
mod quota;
mod send_crash;
mod shared_store;
mod sim;
mod store_usage;
mod token_control;
