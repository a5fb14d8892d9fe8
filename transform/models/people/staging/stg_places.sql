-- The day's places. A city is the join key from people.place_of_birth, so it must be
-- unique: a city named in two counties or countries fails the day's audit, by name.
select
    _day,
    city,
    county,
    country
from {{ source('people', 'places') }}
where _day = {{ run_day() }}
