import rfm_curation


def test_package_is_installed_with_the_workspace_version() -> None:
    assert rfm_curation.__version__ == "0.1.0"
