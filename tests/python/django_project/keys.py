def reversed_key(key, key_prefix, version):
    """A KEY_FUNCTION other than Django's default, for the tests."""
    return f"kf|{key_prefix}|{version}|{key}"
