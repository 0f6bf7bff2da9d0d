"""Field-by-field readers of a product or listing page (pure functions: lxml tree in, values out).

`scraper.extract` orchestrates them: structured data first (JSON-LD, microdata, RDFa,
OpenGraph), then what the page shows (`visible`, `images`, `price`), the platform's own data
(`platforms`) and the listing's pagination (`pagination`).
"""
