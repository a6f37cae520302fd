import rfm_eval


def test_package_is_installed_with_the_workspace_version() -> None:
    assert rfm_eval.__version__ == "0.1.0"
