"""tap-ads-api: the ads API's one response as Singer records, validated and unchanged."""
