"""Python clients for the BTCUSDT direction service, over HTTP and gRPC.

Both clients have the same methods and return the same JSON-shaped answers (see
docs/API_CONTRACT.md); a rejected call raises :class:`ServiceError` with the server's
``error`` message::

    from client import HttpClient, GrpcClient

    with HttpClient("http://127.0.0.1:3000") as service:
        answer = service.predict(candles)        # a candle DataFrame or a list of dicts
        answer["probability_up"], answer["signal"], answer["model_tag"]

    with GrpcClient("127.0.0.1:3010") as service:
        answers = service.predict_batch([window_1, window_2])

The newest closed candles to predict on, from the exchange or a ``btcusdt data update``
dataset: :func:`closed_candles_from_exchange`, :func:`closed_candles_from_dataset`
(``examples/live_predict.py`` puts them together).
"""

from client._common import ServiceError, candles_payload
from client._grpc import GrpcClient
from client._http import HttpClient
from client._live import closed_candles_from_dataset, closed_candles_from_exchange

__all__ = [
    "GrpcClient",
    "HttpClient",
    "ServiceError",
    "candles_payload",
    "closed_candles_from_dataset",
    "closed_candles_from_exchange",
]
