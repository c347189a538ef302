package catalog

import "github.com/cityedge/cityedge/drivers"

// Quantity is one series a configured sensor can report: what an output
// that names each series on its own (Sentilo's sensor ids) registers.
type Quantity struct {
	Name string // drivers' quantity name, e.g. "temperature"
	Unit string // SenML unit; "" for a boolean
	Bool bool   // a flag (occupancy)
}

func num(q, unit string) Quantity { return Quantity{Name: q, Unit: unit} }

var occupied = Quantity{Name: drivers.Occupied, Bool: true}

// Quantities lists every quantity the driver may report with the decoded
// options (the value Options returned, or nil): a superset where the chip
// decides at run time (a BMP280 has no humidity). Unknown drivers: nil.
func Quantities(driver string, opts any) []Quantity {
	switch driver {
	case "ads1115":
		o, _ := opts.(*adcOpts)
		if o == nil {
			return nil
		}
		out := make([]Quantity, 0, len(o.Channels))
		for _, c := range o.Channels {
			out = append(out, num(c.Quantity, c.Unit))
		}
		return out
	case "bh1750":
		return []Quantity{num(drivers.Illuminance, drivers.UnitLux)}
	case "bme280":
		return []Quantity{num(drivers.Temperature, drivers.UnitCelsius), num(drivers.Humidity, drivers.UnitPercentRH), num(drivers.Pressure, drivers.UnitPascal)}
	case "gpio-presence":
		return []Quantity{occupied}
	case "mb1242":
		if o, _ := opts.(*rangerOpts); o != nil && o.OccupancyOnly {
			return []Quantity{occupied}
		}
		return []Quantity{num(drivers.Distance, drivers.UnitMetre), occupied}
	case "qmc5883l":
		if o, _ := opts.(*qmcOpts); o != nil && o.OccupancyOnly {
			return []Quantity{occupied}
		}
		return []Quantity{num(drivers.X, drivers.UnitTesla), num(drivers.Y, drivers.UnitTesla), num(drivers.Z, drivers.UnitTesla), occupied}
	case "scd4x":
		return []Quantity{num(drivers.CO2, drivers.UnitPPM), num(drivers.Temperature, drivers.UnitCelsius), num(drivers.Humidity, drivers.UnitPercentRH)}
	case "sht3x", "sht4x":
		return []Quantity{num(drivers.Temperature, drivers.UnitCelsius), num(drivers.Humidity, drivers.UnitPercentRH)}
	case "sps30":
		return []Quantity{num(drivers.PM1, drivers.UnitUgM3), num(drivers.PM2_5, drivers.UnitUgM3), num(drivers.PM4, drivers.UnitUgM3), num(drivers.PM10, drivers.UnitUgM3)}
	}
	return nil
}
