# Vendored copy of a third-party JSON helper; not Ada's code.
def dumps(obj):
    import json

    return json.dumps(obj)
