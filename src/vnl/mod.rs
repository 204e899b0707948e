//! Pure VNL parsing (scheme, address, [params], /options, quoting, escapes): no I/O here.
