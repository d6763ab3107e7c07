from shared.contracts.common import Coordinates, Line, PickupInStore, ShipTo
from shared.contracts.inventory import LocationAvailability
from ops.demo import address
from services.routing.domain import Location, choose, distance_km

BERLIN = Coordinates(lat=52.52, lon=13.40)
MUNICH = Coordinates(lat=48.14, lon=11.58)
LOCATIONS = {
    "WH-BERLIN": Location("WH-BERLIN", "warehouse", BERLIN, True, False),
    "WH-MUNICH": Location("WH-MUNICH", "warehouse", MUNICH, True, False),
    "ST-MUNICH": Location("ST-MUNICH", "store", MUNICH, False, True),
}
LINES = [Line(sku="SKU-1", quantity=2), Line(sku="SKU-2", quantity=1)]


def stock(location: str, **skus: int) -> list[LocationAvailability]:
    return [LocationAvailability(location_id=location, sku=sku.replace("_", "-"), available=n) for sku, n in skus.items()]


def test_distance_berlin_munich_is_about_500_km():
    assert 490 < distance_km(BERLIN, MUNICH) < 510


def test_picks_the_nearest_location_that_has_every_line():
    availability = stock("WH-BERLIN", SKU_1=5, SKU_2=5) + stock("WH-MUNICH", SKU_1=5, SKU_2=5)
    munich_customer = ShipTo(address=address("Munich"))
    assert choose(munich_customer, LINES, availability, LOCATIONS, set()).location_id == "WH-MUNICH"


def test_skips_locations_missing_a_line_and_excluded_ones():
    availability = stock("WH-BERLIN", SKU_1=5, SKU_2=5) + stock("WH-MUNICH", SKU_1=5)
    munich_customer = ShipTo(address=address("Munich"))
    assert choose(munich_customer, LINES, availability, LOCATIONS, set()).location_id == "WH-BERLIN"
    decision = choose(munich_customer, LINES, availability, LOCATIONS, {"WH-BERLIN"})
    assert decision.location_id is None
    assert decision.reason_code == "NO_LOCATION_WITH_STOCK"


def test_stores_that_do_not_ship_are_not_candidates_for_delivery():
    availability = stock("ST-MUNICH", SKU_1=5, SKU_2=5)
    decision = choose(ShipTo(address=address("Munich")), LINES, availability, LOCATIONS, set())
    assert decision.reason_code == "NO_LOCATION_WITH_STOCK"


def test_pickup_goes_to_the_pickup_store_only():
    availability = stock("ST-MUNICH", SKU_1=5, SKU_2=5) + stock("WH-MUNICH", SKU_1=9, SKU_2=9)
    assert choose(PickupInStore(store_id="ST-MUNICH"), LINES, availability, LOCATIONS, set()).location_id == "ST-MUNICH"
    short = choose(PickupInStore(store_id="ST-MUNICH"), LINES, stock("ST-MUNICH", SKU_1=1), LOCATIONS, set())
    assert short.reason_code == "PICKUP_STORE_NO_STOCK"
    unknown = choose(PickupInStore(store_id="WH-MUNICH"), LINES, availability, LOCATIONS, set())
    assert unknown.reason_code == "PICKUP_STORE_UNKNOWN"
