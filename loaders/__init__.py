"""Click telemetry pipeline: AE aggregates to Postgres, dbt rollups, Stripe meter events."""

__version__ = "0.1.0"
