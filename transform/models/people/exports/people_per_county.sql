{{ config(tags=['export']) }}
-- People per county (and its country) of birth.
select country, county, count(*) as people
from {{ ref('people_with_places') }}
group by country, county
order by people desc, country, county
