-- Production's entity rows, typed for aggregation: value is a whole number held in a
-- double (tested on the source), so bigint sums are exact. created_at stays naive: the
-- calendar day is the day written in production, whatever a session's time zone.
select
    created_at,
    created_at::date as day,
    value::bigint as value,
    _batch_id
from {{ source('padam', 'entity') }}
