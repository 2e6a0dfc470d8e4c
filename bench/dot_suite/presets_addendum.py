# Presets of DOT 3.4 that an older support checkout lacks (appended by bench/dot_suite/run.py).
if "DCR_SETTINGS" not in globals():
    DCR_SETTINGS = {**OIDC_SETTINGS_RW, "DCR_ENABLED": True}  # noqa: F821
if "OIDC_SETTINGS_RP_REGISTRATION" not in globals():
    OIDC_SETTINGS_RP_REGISTRATION = {
        **OIDC_SETTINGS_RW,  # noqa: F821
        "OIDC_RP_INITIATED_REGISTRATION_ENABLED": True,
        "OIDC_RP_INITIATED_REGISTRATION_URL": "/accounts/register/",
    }
