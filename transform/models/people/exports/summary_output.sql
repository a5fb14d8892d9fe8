{{ config(tags=['export']) }}
-- The summary: people per country of birth, most first, then by name.
-- Exported as data/summary_output.json: {"Scotland":8048,"Northern Ireland":1952}.
select country, count(*) as people
from {{ ref('people_with_places') }}
group by country
order by people desc, country
