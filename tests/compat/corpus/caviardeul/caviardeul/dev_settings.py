from caviardeul.settings import *  # noqa F403

DEBUG = True
