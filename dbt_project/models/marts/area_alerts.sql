-- Every area x week x indicator x alert method, with a plain-language explanation in Swedish and
-- English. Methods: farrington (Python task ewi.alerts.run_farrington -> alerts.farrington_results;
-- this builds fine, without farrington rows, while that table is empty), glrnb (the negative-binomial
-- GLR, ewi.alerts.run_glrnb -> alerts.glrnb_results, on Farrington's expectations) and ears_c1/c2/c3
-- (alert_ears). is_default_method marks the method the dashboard calls "an alert" for the row's
-- indicator (var ewi_default_alert_method: one method, or indicator -> method). The area score
-- (ewi.alerts.run_area_score -> alerts.area_score_results) adds one row per area and week with
-- indicator and method 'area_score', its own default.
-- Disclosure control: an alert's figures are sums and means of the weekly cells that
-- area_weekly_indicators publishes or suppresses, so a figure built from a suppressed cell would give
-- that cell back by differencing (observed 7 over three weeks of which two are published 0 and 2).
-- So observed is NULL (and the explanation says so) when any cell of its window is suppressed,
-- expected and upper_threshold when any cell of the method's baseline is, and score when either is;
-- status 'withheld' replaces ok/few_cases then (few_cases would say the window sums to < 5). No week
-- with a count of 1-4 alerts. ewi/disclosure audits the result before anything is published.
{%- set m = var('disclosure_min_count') %}
{%- set min_count = [var('alert_min_count', 5), m] | max %}
{%- set rolling = alert_rolling_weeks() %}
{#- " (3 veckor)" / " (3 weeks)" after the label of a series watched as a rolling sum -#}
{%- set weeks_sv, weeks_en = {}, {} %}
{%- for indicator in ['referrals', 'contacts'] %}
    {%- set n = rolling.get(indicator, 1) %}
    {%- do weeks_sv.update({indicator: ' (' ~ n ~ ' veckor)' if n > 1 else ''}) %}
    {%- do weeks_en.update({indicator: ' (' ~ n ~ ' weeks)' if n > 1 else ''}) %}
{%- endfor %}
{#- Weekly cells behind each figure, counted back from (and including) its week: the window is the
    watched rolling sum; a baseline reaches `lookback` watched weeks back (EARS C1 t-7..t-1, C2
    t-9..t-3, C3 also the C2 statistics of t-1 and t-2; Farrington b years back plus its half
    window w and a week for the closest Monday), each of which sums `window` cells. glrnb's figures
    depend on every week of its chart (since its last alarm or gap) and on Farrington's expectation of
    each: its baseline reaches Farrington's lookback back from the chart's first week (glrnb_withheld). -#}
{%- set n = var('ears_baseline_weeks', 7) %}
{%- set far = var('farrington', {}) %}
{%- set lookback = {'ears_c1': n, 'ears_c2': n + 2, 'ears_c3': n + 4,
                    'farrington': 52 * (far.get('b', 2) | int) + (far.get('w', 3) | int) + 1} %}
{%- set window_weeks -%}
    case indicator
    {%- for indicator, weeks in rolling.items() %} when '{{ indicator }}' then {{ weeks | int }}{% endfor %}
    else 1 end
{%- endset %}
with suppressed_cells as (
    -- a running count of suppressed cells per area and indicator; the grid has a row for every week
    select
        area_code, indicator, week_start,
        {{ window_weeks }} as window_weeks,
        sum(is_suppressed::integer) over (
            partition by area_code, indicator order by week_start rows unbounded preceding
        ) as suppressed_so_far
    {%- if cell_key_method() %}
    -- Cell Key Method: the weekly cells are perturbed, not suppressed; an exact figure built from a
    -- cell of 1-4 would give back what the perturbation hides, so those cells count here.
    from (select *, numerator between 1 and {{ m - 1 }} as is_suppressed from {{ ref('int_area_weekly_counts') }}) as c
    {%- else %}
    from {{ ref('area_weekly_indicators') }}
    {%- endif %}
),

withheld as (
    -- lag() takes its offset per row: the cells in weeks t-k+1..t number so_far(t) - so_far(t-k)
    select
        area_code, indicator, week_start,
        suppressed_so_far - coalesce(lag(suppressed_so_far, window_weeks) over w, 0) > 0 as window_withheld,
        {%- for method, weeks in lookback.items() %}
        suppressed_so_far - coalesce(lag(suppressed_so_far, window_weeks + {{ weeks }}) over w, 0) > 0
            as {{ method }}_baseline_withheld{{ ',' if not loop.last }}
        {%- endfor %}
    from suppressed_cells
    window w as (partition by area_code, indicator order by week_start)
),

series as (
    select s.area_code, s.week_start, s.iso_week, s.indicator, a.area_name
    from {{ ref('alert_series') }} as s
    inner join {{ ref('stg_areas') }} as a on a.area_code = s.area_code
),

glrnb as (
    select
        area_code, week_start, indicator, 'glrnb'::text as method, observed, expected, upper_threshold,
        score, is_alert, status, null::integer as years_used, null::integer as years_configured
    from {{ ref('stg_glrnb_results') }}
),

glrnb_withheld as (
    -- a suppressed cell anywhere from Farrington's lookback before the chart's first week to this week
    select
        g.area_code, g.indicator, g.week_start,
        cur.suppressed_so_far - coalesce(before.suppressed_so_far, 0) > 0 as baseline_withheld
    from {{ ref('stg_glrnb_results') }} as g
    inner join suppressed_cells as cur
        on cur.area_code = g.area_code and cur.indicator = g.indicator and cur.week_start = g.week_start
    left join suppressed_cells as before
        on
            before.area_code = g.area_code and before.indicator = g.indicator
            and before.week_start = coalesce(g.chart_start, g.week_start)
            - 7 * ({{ lookback['farrington'] }} + cur.window_weeks)
),

farrington as (
    select
        area_code, week_start, indicator, 'farrington'::text as method, observed, expected, upper_threshold,
        score, is_alert, status, years_used, years_configured
    from {{ ref('stg_farrington_results') }}
),

ears as (
    select
        area_code, week_start, indicator, method, observed, expected, upper_threshold, score, is_alert, status,
        null::integer as years_used, null::integer as years_configured
    from {{ ref('alert_ears') }}
),

results as (
    select * from farrington
    union all
    select * from glrnb
    union all
    select * from ears
),

controlled as (
    select
        r.*,
        s.area_name,
        s.iso_week,
        r.observed is not null and (r.observed between 1 and {{ m - 1 }} or coalesce(h.window_withheld, true))
            as observed_is_suppressed,
        coalesce(case r.method
            {%- for method in lookback %}
            when '{{ method }}' then h.{{ method }}_baseline_withheld
            {%- endfor %}
            when 'glrnb' then gw.baseline_withheld
            end, true) and r.expected is not null as baseline_is_suppressed,
        coalesce(r.is_alert and r.observed >= {{ min_count }}, false) as alert,
        -- Labels by CASE rather than joins to VALUES lists: the planner cannot estimate those joins
        -- and chose a nested loop over every area (1.2 s against 0.2 s at two years).
        case r.indicator
            when 'chronic_absence' then 'Elever med hög frånvaro'
            when 'invalid_absence' then 'Elever med hög ogiltig frånvaro'
            when 'referrals' then 'Unga med orosanmälan{{ weeks_sv['referrals'] }}'
            when 'contacts' then 'Unga med polis-/fältkontakt{{ weeks_sv['contacts'] }}'
            when 'multi_signal' then 'Unga med flera signaler (12 veckor)'
        end as label_sv,
        case r.indicator
            when 'chronic_absence' then 'Pupils with high absence'
            when 'invalid_absence' then 'Pupils with high unexcused absence'
            when 'referrals' then 'Youths with a report of concern{{ weeks_en['referrals'] }}'
            when 'contacts' then 'Youths with a police/outreach contact{{ weeks_en['contacts'] }}'
            when 'multi_signal' then 'Youths with several signals (12 weeks)'
        end as label_en,
        case r.method
            when 'farrington' then 'Farrington (flexibel)'
            when 'glrnb' then 'GLR (negativ binomial)'
            else upper(replace(r.method, '_', ' '))
        end as name_sv,
        case r.method
            when 'farrington' then 'Farrington (flexible)'
            when 'glrnb' then 'GLR (negative binomial)'
            else upper(replace(r.method, '_', ' '))
        end as name_en,
        to_char(r.expected, 'FM999990.0') as expected_text,
        to_char(r.upper_threshold, 'FM999990.0') as threshold_text
    from results as r
    inner join series as s
        on s.area_code = r.area_code and s.week_start = r.week_start and s.indicator = r.indicator
    left join withheld as h
        on h.area_code = r.area_code and h.week_start = r.week_start and h.indicator = r.indicator
    left join glrnb_withheld as gw
        on
            r.method = 'glrnb' and gw.area_code = r.area_code and gw.week_start = r.week_start
            and gw.indicator = r.indicator
),

explained as (
    select
        *,
        case when observed_is_suppressed then 'ej publicerat' else round(observed)::bigint::text end
            as observed_sv,
        case when observed_is_suppressed then 'not published' else round(observed)::bigint::text end
            as observed_en,
        case when baseline_is_suppressed then 'ej publicerat' else expected_text end as expected_sv,
        case when baseline_is_suppressed then 'not published' else expected_text end as expected_en,
        case when baseline_is_suppressed then 'ej publicerad' else threshold_text end as threshold_sv,
        case when baseline_is_suppressed then 'not published' else threshold_text end as threshold_en,
        case when (observed_is_suppressed or baseline_is_suppressed) and status in ('ok', 'few_cases')
             then 'withheld' else status end as published_status,
        case when years_used is not null and years_used < years_configured
             then format(' Bygger på %s års historik i stället för %s.', years_used, years_configured) else '' end
            as history_sv,
        case when years_used is not null and years_used < years_configured
             then format(' Based on %s year(s) of history instead of %s.', years_used, years_configured) else '' end
            as history_en
    from controlled
),

area_score_withheld as (
    -- the area score is a function of its components' counts and baselines: published only where
    -- every component's own figures are (a component row with a withheld figure withholds it)
    select area_code, week_start, bool_or(observed_is_suppressed or baseline_is_suppressed) as withheld
    from controlled
    where method = 'farrington' and indicator in ('chronic_absence', 'invalid_absence', 'referrals', 'contacts')
    group by area_code, week_start
),

area_score as (
    select
        r.area_code, a.area_name, r.week_start, to_char(r.week_start, 'IYYY-"W"IW') as iso_week,
        r.score, r.is_alert, r.status,
        coalesce(w.withheld, true) as withheld,
        case when coalesce(w.withheld, true) then null else to_char(round(r.score::numeric, 2), 'FM999990.00') end
            as score_text
    from {{ ref('stg_area_score_results') }} as r
    inner join {{ ref('stg_areas') }} as a on a.area_code = r.area_code
    left join area_score_withheld as w on w.area_code = r.area_code and w.week_start = r.week_start
),

indicator_rows as (
    select
        area_code::text as area_code,
        area_name::text as area_name,
        week_start::date as week_start,
        iso_week::text as iso_week,
        indicator::text as indicator,
        method::text as method,
        (case when observed_is_suppressed then null else round(observed) end)::integer as observed,
        (case when baseline_is_suppressed then null else round(expected::numeric, 1) end)::numeric(10, 1) as expected,
        (case when baseline_is_suppressed then null else round(upper_threshold::numeric, 1) end)::numeric(10, 1)
            as upper_threshold,
        (case when observed_is_suppressed or baseline_is_suppressed then null else round(score::numeric, 2) end)
            ::numeric(10, 2) as score,
        alert::boolean as is_alert,
        published_status::text as status,
        (method = {{ default_alert_method('indicator') }})::boolean as is_default_method,
        (case status
            when 'no_data' then format('%s, %s: inga uppgifter denna vecka (lov eller ingen leverans).',
                                       label_sv, area_name)
            when 'insufficient_history' then format('%s, %s: för kort historik för %s.%s',
                                                    label_sv, area_name, name_sv, history_sv)
            when 'no_convergence' then format('%s, %s: modellen kunde inte skattas denna vecka (%s).',
                                              label_sv, area_name, name_sv)
            else format('%s, %s vecka %s: %s observerade, %s förväntade, larmgräns %s (%s). %s%s',
                        label_sv, area_name, iso_week, observed_sv, expected_sv, threshold_sv, name_sv,
                        case when alert then 'LARM: över larmgränsen.'
                             when published_status = 'withheld' then 'Inget larm.'
                             when status = 'few_cases' or observed < {{ min_count }}
                                 then 'Inget larm: för få fall för att larma.'
                             else 'Inget larm.' end,
                        history_sv)
        end)::text as explanation_sv,
        (case status
            when 'no_data' then format('%s, %s: no data this week (holiday or no delivery).',
                                       label_en, area_name)
            when 'insufficient_history' then format('%s, %s: not enough history for %s.%s',
                                                    label_en, area_name, name_en, history_en)
            when 'no_convergence' then format('%s, %s: the model could not be fitted this week (%s).',
                                              label_en, area_name, name_en)
            else format('%s, %s week %s: %s observed, %s expected, alert threshold %s (%s). %s%s',
                        label_en, area_name, iso_week, observed_en, expected_en, threshold_en, name_en,
                        case when alert then 'ALERT: above the threshold.'
                             when published_status = 'withheld' then 'No alert.'
                             when status = 'few_cases' or observed < {{ min_count }}
                                 then 'No alert: too few cases to alert on.'
                             else 'No alert.' end,
                        history_en)
        end)::text as explanation_en
    from explained
)

select * from indicator_rows
union all
-- The area score (indicator and method 'area_score'): no count, expectation or threshold of its own
-- (observed, expected and upper_threshold NULL), its score ln(p) / ln(alpha) (> 1 = past the
-- threshold) unless a component's figures are withheld, and its alarm, which no count of 1-4 can
-- raise (ewi/alerts/area_score.py). The explanation gives no figure but the score.
select
    area_code::text,
    area_name::text,
    week_start::date,
    iso_week::text,
    'area_score'::text,
    'area_score'::text,
    null::integer,
    null::numeric(10, 1),
    null::numeric(10, 1),
    (case when withheld or status <> 'ok' then null else round(score::numeric, 2) end)::numeric(10, 2),
    is_alert::boolean,
    (case when status = 'ok' and withheld then 'withheld' else status end)::text,
    true,
    (case status
        when 'no_data' then format('Områdespoäng, %s: för få indikatorer med uppgifter vecka %s.', area_name, iso_week)
        when 'insufficient_history' then format('Områdespoäng, %s: för kort historik vecka %s.', area_name, iso_week)
        else format('Områdespoäng (frånvaro, orosanmälningar och kontakter tillsammans), %s vecka %s: poäng %s '
                    || '(larm över 1). %s', area_name, iso_week, coalesce(score_text, 'ej publicerad'),
                    case when is_alert then 'LARM: flera indikatorer stiger samtidigt.' else 'Inget larm.' end)
    end)::text,
    (case status
        when 'no_data' then format('Area score, %s: too few indicators with data in week %s.', area_name, iso_week)
        when 'insufficient_history' then format('Area score, %s: not enough history in week %s.', area_name, iso_week)
        else format('Area score (absence, reports of concern and contacts together), %s week %s: score %s '
                    || '(alert above 1). %s', area_name, iso_week, coalesce(score_text, 'not published'),
                    case when is_alert then 'ALERT: several indicators rise together.' else 'No alert.' end)
    end)::text
from area_score
