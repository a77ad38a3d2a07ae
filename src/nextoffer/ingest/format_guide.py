"""The prose sections of docs/data-format.md: custom attributes and mapping files.

The worked example's files are constants here, so that a test loads exactly what the page
shows and checks the numbers it states.
"""

from __future__ import annotations

EXAMPLE_EXPORT = """\
customerID,gender,SeniorCitizen,Partner,tenure,Contract,PaymentMethod,MonthlyCharges,TotalCharges,PhoneService,InternetService,OnlineSecurity,StreamingTV,Churn
7590-VHVEG,Female,0,Yes,1,Month-to-month,Electronic check,29.85,29.85,No,DSL,No,No,No
5575-GNVDE,Male,0,No,34,One year,Mailed check,56.95,1889.5,Yes,DSL,Yes,No,No
3668-QPYBK,Male,0,No,2,Month-to-month,Mailed check,53.85,108.15,Yes,DSL,Yes,No,Yes
7795-CFOCW,Male,0,No,45,One year,Bank transfer (automatic),42.30,1840.75,No,DSL,Yes,No,No
9237-HQITU,Female,0,No,2,Month-to-month,Electronic check,70.70,151.65,Yes,Fiber optic,No,No,Yes
9305-CDSKC,Female,1,No,8,Month-to-month,Bitcoin,99.65,820.5,Yes,Fiber optic,No,Yes,Yes
"""
"""`telco_export.csv`: six customers as a CRM exports them (public IBM telco sample rows)."""

EXAMPLE_PRODUCTS = """\
product_id,name,category,price,margin,exclusion_group,upgrades_from,requires_products
phone,Home phone,fixed_voice,20,8,,,
dsl,DSL internet,broadband_plan,35,12,internet,,
fiber,Fiber internet,broadband_plan,70,25,internet,dsl,
online_security,Online security,security,5,4,,,dsl|fiber
streaming_tv,Streaming TV,tv,10,3,,,dsl|fiber
"""
"""`products.csv`: the catalogue, in the import format (a mapping does not make products)."""

EXAMPLE_MAPPING = """\
files:
  customers:
    path: telco_export*.csv
    rename:
      customerID: customer_id
      Contract: contract_type
      PaymentMethod: payment_method
      MonthlyCharges: arpu
    values:
      contract_type: {Month-to-month: month_to_month, One year: one_year, Two year: two_year}
      payment_method:
        Electronic check: bank_transfer
        Mailed check: cheque
        Bank transfer (automatic): direct_debit
        Credit card (automatic): credit_card
    derive:
      signup_date: {from_tenure_months: tenure, as_of: "2025-01-01"}
    attributes:
      SeniorCitizen: {kind: boolean}
      gender: {role: display}
      Churn: {role: label}
      TotalCharges: {role: ignore}
    holdings:
      start_date: "2025-01-01"
      products:
        PhoneService: {product: phone, holds: [Yes]}
        InternetService: {values: {DSL: dsl, Fiber optic: fiber}, none: [No]}
        OnlineSecurity: {product: online_security}
        StreamingTV: {product: streaming_tv}
    churn_label: {column: Churn, churned: [Yes], as_of: "2025-01-01"}
"""
"""`mapping.yaml` for the export above."""

ATTRIBUTES = """\
## Custom attributes

Any column of a customers file that is not one of the columns above is a **custom
attribute** of the customer (demographics, flags, scores...). Attributes are stored with the
customer (`customers.attributes`, a JSON object), typed, shown in the console's customer
page, and, unless a mapping says otherwise, used by the churn model and the offer ranker.

- **Name**: the column name in snake_case: `SeniorCitizen` → `senior_citizen`,
  `Payment Method` → `payment_method`. A name that becomes one of the standard columns
  (`Region` → `region`), two columns that become the same name, or a name that does not
  start with a letter stop the load at the header, before any row is read, with one line
  saying which; rename the column (or give it role `ignore`) in a mapping.
- **Kind**: `number`, `boolean`, `date` (`YYYY-MM-DD`) or `category` (text, ≤ 200
  characters). Declared in a mapping, or else inferred once, from the first block of the
  first file that brings the attribute: `boolean` when every non-empty value is a word
  among yes/no/true/false/y/n/t/f (any case), `number` when every one is a finite number,
  `date` when every one is a `YYYY-MM-DD` date, `category` otherwise. A column of 0/1 is a
  number unless declared `boolean`. The kind is recorded in `customer_attribute_schema` and
  kept: a later file never changes it (a mapping's declaration does).
- **Values**: a value that does not fit the attribute's kind rejects the row, e.g.
  `bad_type: attribute monthly_charges 'n/a' is not a number` (a boolean takes every
  spelling of the boolean columns, `1/0` included). An empty cell is "no value": the key is
  left out of the customer's attributes.
- **Role** (default `feature`): `feature` — models use it and the console shows it;
  `display` — shown, never used by models; `label` — a target such as "churned": shown,
  never a feature; `ignore` — never stored.
- **Loading**: a customers file with attribute columns sets each of its customers'
  attributes to exactly the file's (an attribute absent from the file is removed); a
  customers file without any leaves stored attributes as they are. Loading the same file
  twice changes nothing.
- Models see attribute `x` as the feature column `attr_x` (numbers as they are, booleans
  as 1/0, dates as days since 1970-01-01, categories as categories).
- Product rules can test attributes: `requires_attribute` `fiber_available=true|region=north`
  (compared as text; booleans as `true`/`false`, numbers as written).
"""

MAPPING = f"""\
## Mapping an operator's export

Most operators cannot export nextoffer's files as they are: their CRM writes one wide row
per customer, with its own column names and spellings, and one Yes/No column per product
instead of a subscriptions file. A **mapping file** (YAML) says how to read such an export:

```
nextoffer ingest ./export --mapping mapping.yaml
```

The nightly ETL (`nextoffer etl nightly`, the `etl` job, the console's *Run ETL*) reads its
source through the mapping named by `NEXTOFFER_INGEST_MAPPING`.

### Format

```yaml
version: 1                  # optional
files:
  <entity>:                 # what the file holds: customers (or products, transactions...)
    path: <name or glob>    # which files of PATH; default: the entity's usual file names
    rename: {{<column in the file>: <column of the import format>}}
    values:                 # per column (as renamed): value in the file → value to store
      <column>: {{<value>: <value>}}
    defaults: {{<column>: <value>}}      # for empty cells and absent columns
    derive:                 # a date from a tenure in months (customers' signup_date)
      signup_date: {{from_tenure_months: <column>, as_of: YYYY-MM-DD}}
    attributes:             # customers only: kind and/or role of extra columns
      <column>: {{kind: number|category|boolean|date, role: feature|display|label|ignore}}
    holdings:               # customers only: wide holdings → subscriptions
      start_date: <YYYY-MM-DD or a column>   # default: the customer's signup_date
      products:
        <column>: {{product: <product id>, holds: [<value>, ...]}}  # a Yes/No column
        <column>: {{values: {{<value>: <product id>}}, none: [<value>, ...]}}  # names the product
    churn_label: {{column: <column>, churned: [<value>, ...], as_of: YYYY-MM-DD}}
```

- Every section names columns as they are **after** `rename`. Values are matched exactly as
  written (case and spaces count). Every scalar of the file is read as text: `Yes`, `No`,
  `01` and dates stay as written (YAML would otherwise read `Yes` as a boolean).
- Steps, in order: `rename`, `values`, `derive` (fills empty cells only), `defaults`
  (empty cells and absent columns), then attributes, holdings and the churn label.
- **A value with no entry in `values` passes through unchanged**, so validation rejects the
  row with its usual reason naming the value (`bad_enum: payment_method 'Bitcoin' is not
  one of ...`): add the value to the mapping and load again.
- `derive.signup_date`: the day `tenure` months (of 365.25/12 days) before `as_of`; a
  tenure that is no number is passed on, so the date's check names it.
- `holdings.products`: a `product` column holds the product on a value in `holds` (default:
  any true spelling: yes, true, y, t, 1, any case); a `values` column names the product held
  (values in `none`, default `No`/`None` in either case, and empty cells mean none; any other
  value without an entry is taken as a product id and rejected as unknown). Each held
  product is one subscription with id `<customer_id>:<column in snake_case>`, so a later
  export in which the column names another product (DSL → fiber) updates it. Rows derived
  from a rejected customer row are not loaded (the customer's reason says why). Several
  rejected holdings of one line are recorded once, with the first reason.
- `churn_label`: one `churn_labels` row per non-empty cell: churned when the value is in
  `churned` (default: any true spelling), else not churned.
- Columns read by `holdings`, `churn_label` and `derive` are not attributes unless declared
  in `attributes`; every other extra column is (role `feature`).
- Rejected rows keep the **line numbers and text of the operator's file**. The ledger
  records a mapped file once per table it loads (`<file>#customers`, `#subscriptions`,
  `#churn_labels`), with a hash of the file and its mapping entry together: `--new-only`
  (and the nightly) leave an unchanged file out, and load it again when the mapping changed.
- Products come from a products file in the import format (the catalogue, with prices,
  margins and rules); a mapping may rename its columns (`files.products`) but does not make
  products from an export.
- Not done by a mapping: ending subscriptions. A later export in which a customer no longer
  holds a `product` column's product does not end the earlier subscription; deliver a
  subscriptions file with its `end_date` for that.
- Which customer fields stay required: `signup_date` (tenure is counted from it; a churn
  driver and a product rule), `contract_type` and `payment_method` (eligibility by contract,
  both churn drivers). Give them through `rename`, `values`, `derive` or `defaults` when the
  export lacks them. `display_name` (shown as the id), `age_band` and `region` (`unknown`)
  and `arpu` (unknown, not 0) may be missing.

### Worked example

A telco's CRM export `telco_export.csv`, one row per customer, no purchase history:

```
{EXAMPLE_EXPORT.rstrip()}
```

The catalogue, `products.csv`, in the import format (DSL and fiber exclude each other, but
fiber is an upgrade from DSL; security and TV need an internet line):

```
{EXAMPLE_PRODUCTS.rstrip()}
```

`mapping.yaml`:

```yaml
{EXAMPLE_MAPPING.rstrip()}
```

`nextoffer ingest . --mapping mapping.yaml` in the folder with both files loads:

- 5 products, 5 customers, 11 subscriptions (one per `Yes` cell and per DSL or fiber line
  of the 5 good rows) and 5 churn labels (2 churned).
- Line 7 (`9305-CDSKC`) is quarantined, with the reason
  `bad_enum: payment_method 'Bitcoin' is not one of ...` (the list of payment methods).
- Signup dates from `tenure` (`5575-GNVDE`: 34 months before 2025-01-01 is 2022-03-03);
  `Mailed check` is stored as `cheque`; `MonthlyCharges` becomes the ARPU; age band and
  region are `unknown`.
- Attributes: `senior_citizen` (boolean, declared), `partner` (boolean, inferred from
  Yes/No), `gender` (category, display only), `churn` (boolean, a label: never a feature);
  `tenure` fed the signup date and `TotalCharges` is ignored, so neither is stored.
"""
