"""The sandbox against Membrane's published OpenAPI.

`membrane-openapi-subset.json` here is a verbatim copy of the project's reference file
(`shared/reference/membrane-openapi-subset.json`, itself verbatim from Membrane's published spec),
so a clone without `shared/` beside it runs the contract test too. Never edit it to make a test
pass: when Membrane's spec changes, copy the new reference file over it; the test checks the two
are the same wherever the reference is present.
"""
