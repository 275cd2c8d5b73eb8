//! Telemetry rules: compiling Telemetry resources and turning attribute bags into metric, log and span records.
