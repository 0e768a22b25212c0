"""The flow language: model, parsing with positions, validation, schema, repository contract."""
