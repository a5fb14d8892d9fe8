{{ config(tags=['export']) }}
-- People per country of birth and decade of birth (1830 = born 1830 to 1839).
select country, (extract(year from date_of_birth)::int / 10) * 10 as decade, count(*) as people
from {{ ref('people_with_places') }}
group by country, decade
order by country, decade
