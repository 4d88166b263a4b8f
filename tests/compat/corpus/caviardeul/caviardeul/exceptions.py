class ArticleFetchError(Exception):
    pass
