"""taskiq-deduplication, a Redis-backed deduplication middleware (a TaskiqMiddleware):
its own test suite (taskiq messages and results built by hand, fakeredis and a real
Redis), and its README's dispatch sequence through a real ``taskiq worker``."""

from __future__ import annotations

from tests.compat.harness import Run

TESTS = [
    "test_integration::test_full_lifecycle",
    "test_integration::test_duplicate_rejected",
    "test_integration::test_redispatch_after_on_error",
    "test_integration::test_lua_only_owner_can_release",
    "test_integration::test_ttl_is_applied",
    "test_integration::test_heartbeat_keeps_long_running_lock_alive",
    "test_integration::test_explicit_key_end_to_end",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_same_kwargs_same_key",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_different_kwargs_different_key",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_kwarg_order_invariant",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_different_task_names_different_keys",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_explicit_key_label",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_explicit_key_ignores_kwargs",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_key_fields_filters_kwargs",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_key_fields_different_included_fields",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_different_args_different_key",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_arg_order_matters",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_key_fields_ignores_args",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_key_prefix_in_output",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_empty_kwargs_produces_consistent_key",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_key_fields_empty_list_ignores_all_kwargs",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_key_fields_absent_from_kwargs_are_ignored",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_explicit_key_takes_precedence_over_key_fields",
    "test_middleware::TestDefaultBuildDeduplicationKey::test_non_serializable_kwargs_returns_none",
    "test_middleware::TestPreSend::test_first_send_passes",
    "test_middleware::TestPreSend::test_duplicate_raises",
    "test_middleware::TestPreSend::test_duplicate_error_carries_structured_attributes",
    "test_middleware::TestPreSend::test_duplicate_error_holder_none_when_lock_released_in_race",
    "test_middleware::TestPreSend::test_deduplication_disabled_label",
    "test_middleware::TestPreSend::test_deduplication_disabled_by_default_init",
    "test_middleware::TestPreSend::test_ttl_applied",
    "test_middleware::TestPreSend::test_different_kwargs_both_pass",
    "test_middleware::TestPreSend::test_non_serializable_kwargs_skips_deduplication",
    "test_middleware::TestPreSend::test_default_ttl_applied",
    "test_middleware::TestPostSend::test_pre_send_only_uses_grace_ttl",
    "test_middleware::TestPostSend::test_post_send_extends_to_full_ttl",
    "test_middleware::TestPostSend::test_post_send_does_not_extend_short_ttl",
    "test_middleware::TestPostSend::test_post_send_does_not_resurrect_released_lock",
    "test_middleware::TestPostSend::test_post_send_survives_redis_error",
    "test_middleware::TestPostSend::test_post_send_deduplication_disabled_noop",
    "test_middleware::TestFailOpen::test_redis_error_raises_by_default",
    "test_middleware::TestFailOpen::test_redis_error_lets_task_through_when_enabled",
    "test_middleware::TestFailOpen::test_duplicates_still_raise_when_enabled",
    "test_middleware::TestFailOpen::test_fail_open_leaves_nothing_to_clean_up",
    "test_middleware::TestFailOpen::test_release_error_does_not_propagate",
    "test_middleware::TestPostExecute::test_releases_lock",
    "test_middleware::TestPostExecute::test_deduplication_disabled_noop",
    "test_middleware::TestPostExecute::test_post_execute_after_ttl_expiry_is_safe",
    "test_middleware::TestOnError::test_releases_lock_on_error",
    "test_middleware::TestOnError::test_deduplication_disabled_noop",
    "test_middleware::TestSenderWorkerConfigMismatch::test_post_execute_releases_lock_despite_worker_disabled_default",
    "test_middleware::TestSenderWorkerConfigMismatch::test_on_error_releases_lock_despite_worker_disabled_default",
    "test_middleware::TestRedispatchAfterRelease::test_redispatch_after_post_execute",
    "test_middleware::TestRedispatchAfterRelease::test_redispatch_after_on_error",
    "test_middleware::TestAtomicRelease::test_only_owner_can_release",
    "test_middleware::TestAtomicRelease::test_release_missing_key_is_noop",
    "test_middleware::TestLifecycle::test_startup_creates_redis_client",
    "test_middleware::TestLifecycle::test_startup_accepts_redis_dsn",
    "test_middleware::TestLifecycle::test_shutdown_closes_redis_client",
    "test_middleware::TestLifecycle::test_shutdown_without_startup_is_safe",
    "test_middleware::TestLifecycle::test_pre_send_without_startup_raises_runtime_error",
    "test_middleware::TestStartupRetry::test_startup_succeeds_after_retries",
    "test_middleware::TestStartupRetry::test_startup_raises_after_all_retries_exhausted",
    "test_middleware::TestStartupRetry::test_startup_no_retry_on_first_success",
    "test_middleware::TestStartupRetry::test_startup_retry_delay_exponential",
    "test_middleware::TestStartupRetry::test_startup_closes_failed_clients",
    "test_middleware::TestStartupRetry::test_startup_closes_client_when_all_retries_exhausted",
    "test_middleware::TestLabelTypeParsing::test_bool_label_false_disables_dedup",
    "test_middleware::TestLabelTypeParsing::test_bool_label_true_enables_dedup",
    "test_middleware::TestLabelTypeParsing::test_string_bool_label_true_enables_dedup",
    "test_middleware::TestLabelTypeParsing::test_string_bool_label_false_disables_dedup",
    "test_middleware::TestLabelTypeParsing::test_key_fields_list_parsed_correctly",
    "test_middleware::TestLabelTypeParsing::test_key_fields_non_list_ignored",
    "test_middleware::TestLabelTypeParsing::test_invalid_bool_label_warns_and_uses_default",
    "test_middleware::TestLabelTypeParsing::test_string_true_lowercase_enables_dedup",
    "test_middleware::TestLabelTypeParsing::test_string_false_lowercase_disables_dedup",
    "test_middleware::TestLabelTypeParsing::test_invalid_key_fields_label_warns_and_falls_back_to_all_kwargs",
    "test_middleware::TestLabelTypeParsing::test_key_fields_string_parses_to_non_list_warns",
    "test_middleware::TestLabelTypeParsing::test_missing_key_fields_warns",
    "test_middleware::TestLabelTypeParsing::test_present_key_fields_do_not_warn",
    "test_middleware::TestLabelTypeParsing::test_stringified_key_fields_parsed_correctly",
    "test_middleware::TestLabelTypeParsing::test_stringified_key_fields_different_included_fields",
    "test_middleware::TestLabelTypeParsing::test_invalid_ttl_string_warns_and_uses_default",
    "test_middleware::TestLabelTypeParsing::test_invalid_ttl_none_warns_and_uses_default",
    "test_middleware::TestKeyCaching::test_key_cached_during_pre_send",
    "test_middleware::TestKeyCaching::test_post_execute_uses_cached_key",
    "test_middleware::TestKeyCaching::test_on_error_uses_cached_key",
    "test_middleware::TestKeyCaching::test_cached_key_none_when_key_build_fails",
    "test_middleware::TestKeyCaching::test_post_execute_noop_when_cached_key_is_none",
    "test_middleware::TestKeyCaching::test_on_error_noop_when_cached_key_is_none",
    "test_middleware::TestKeyCaching::test_release_if_owned_raises_without_redis",
    "test_middleware::TestTTLExpiry::test_lock_expiry_admits_duplicate",
    "test_middleware::TestHeartbeat::test_pre_execute_starts_heartbeat",
    "test_middleware::TestHeartbeat::test_pre_execute_noop_when_heartbeat_disabled",
    "test_middleware::TestHeartbeat::test_pre_execute_noop_without_cached_key",
    "test_middleware::TestHeartbeat::test_heartbeat_refreshes_ttl",
    "test_middleware::TestHeartbeat::test_release_lock_cancels_heartbeat",
    "test_middleware::TestHeartbeat::test_heartbeat_stops_when_lock_lost",
    "test_middleware::TestHeartbeat::test_shutdown_cancels_heartbeats",
    "test_middleware::TestHeartbeat::test_default_heartbeat_interval_is_third_of_ttl",
    "test_middleware::TestHeartbeat::test_explicit_heartbeat_interval_overrides",
    "test_middleware::TestHeartbeat::test_refresh_if_owned_raises_without_redis",
    "test_middleware::TestHeartbeat::test_heartbeat_continues_after_refresh_error",
    "test_middleware::TestExplicitKeyEdgeCases::test_empty_string_key_produces_prefix_only_key",
    "test_middleware::TestExplicitKeyEdgeCases::test_empty_string_key_acquires_lock",
]
BEFORE = [
    "first_dispatch_accepted",
    "duplicate_dispatch_rejected",
    "rejection_names_the_winner",
    "other_arguments_are_not_duplicates",
]
CHECKS = [*TESTS, *BEFORE, "worker_starts", "dispatch_accepted_after_run"]
SERVICES = frozenset({"redis"})
LOCKS: tuple[str, ...] = ()
COST = 12


def drive(run: Run) -> None:
    run.source_paths.append("src")  # what `uv sync` does for its users: the package importable
    run.pytest("pytest", ["tests"], TESTS)
    run.reset_redis()
    run.probe("probe_client.py", BEFORE, "before")
    with run.check("worker_starts"):
        run.serve("worker", ["taskiq", "worker", "probe_app:broker"])
    if not run.results["worker_starts"].ok:
        run.fail("dispatch_accepted_after_run", "not reached: the worker did not start")
        return
    run.probe("probe_client.py", ["dispatch_accepted_after_run"], "after")
