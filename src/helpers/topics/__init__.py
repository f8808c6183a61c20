"""One module per chapter, named after the chapter's file: ``helpers.topics.resnet_rnn`` holds
the experiments of ``book/depth/resnet_rnn.md``. A topic imports ``helpers.core`` and
``helpers.engine``, never another topic; a chapter imports its topic as a module::

    from helpers.topics import resnet_rnn
    resnet_rnn.rnn_unroll(...)
"""
