-- The day's people.
select
    _day,
    given_name,
    family_name,
    date_of_birth,
    place_of_birth
from {{ source('people', 'people') }}
where _day = {{ run_day() }}
