import logging

logger = logging.getLogger("caviardeul")
